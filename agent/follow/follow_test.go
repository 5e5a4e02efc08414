package follow

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/test/tools"
)

// Issue 28: against coordinators that do not answer, the follower logged
// every few seconds without backing off. Now an outage is one warning, the
// reads back off, and the recovery is one line with the count.
func TestOutageLoggedOnceWithBackoff(t *testing.T) {
	var up atomic.Bool
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if !up.Load() {
			http.Error(w, `{"error": "not ready"}`, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"generation": 1, "head": "h1", "hash": "m1"}`))
	}))
	defer srv.Close()
	var logs tools.SyncBuffer
	f := &Follower{Client: api.NewClient(srv.URL), Every: 5 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	for asked.Load() < 6 { // 5, 10, 20, 40, 80 ms apart (and jitter)
		time.Sleep(5 * time.Millisecond)
	}
	up.Store(true)
	for f.Head() != "h1" {
		time.Sleep(5 * time.Millisecond)
	}
	out := logs.String()
	if n := strings.Count(out, "failed; retrying"); n != 1 {
		t.Errorf("%d warnings for one outage, want 1:\n%s", n, out)
	}
	m := regexp.MustCompile(`works again.* failures=(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no recovery line with the count:\n%s", out)
	}
	if n, _ := strconv.Atoi(m[1]); n < 6 {
		t.Errorf("no recovery line with the count (at least 6):\n%s", out)
	}
	if f.fails.Failing() != 0 {
		t.Errorf("still failing after the coordinators answered")
	}
}
