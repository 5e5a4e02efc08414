package retry

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Issue 28: the agent logged the same warning every 5 s against a dead
// coordinator. Ten identical failures are one warning (with the count at
// debug level on each), a different failure another, and the recovery one
// line that says after how many.
func TestFailuresLogOnceWithCount(t *testing.T) {
	var buf bytes.Buffer
	f := New(slog.New(slog.NewTextHandler(&buf, nil)), "renewal", wait.Backoff{})
	down := errors.New("coordinator https://c:7080: connection refused")
	for range 10 {
		f.Failed(down, "pod", "default/a")
	}
	f.Failed(errors.New("coordinator https://c:7080: 503 not ready"))
	f.Failed(errors.New("coordinator https://c:7080: 503 not ready"))
	f.Succeeded("pod", "default/a")
	f.Succeeded() // nothing failed since: silent

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3 (first failure, a different one, recovery):\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"renewal: failed; retrying", "renewal: failed; retrying", "renewal: works again"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d %q, want %q", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[0], "failures=1") || !strings.Contains(lines[1], "failures=11") || !strings.Contains(lines[2], "failures=12") {
		t.Errorf("counts missing:\n%s", buf.String())
	}
	if f.Failing() != 0 {
		t.Errorf("Failing() = %d after success", f.Failing())
	}
}

// The waits grow exponentially with jitter up to the cap, and start over
// after a success.
func TestFailuresBackOff(t *testing.T) {
	f := New(slog.New(slog.DiscardHandler), "x", wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 100, Cap: time.Second})
	var waits []time.Duration
	for range 8 {
		waits = append(waits, f.Failed(errors.New("down")))
	}
	for i, w := range waits {
		base := min(100*time.Millisecond<<i, time.Second)
		if w < base || w > base+base/2 {
			t.Errorf("wait %d = %v, want in [%v, %v]", i, w, base, base+base/2)
		}
	}
	f.Succeeded()
	if w := f.Failed(errors.New("down")); w > 150*time.Millisecond {
		t.Errorf("first wait after a success %v, want the initial 100ms (+jitter)", w)
	}
}
