package lighthouse_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/follow"
	"github.com/sealmesh/sealmesh/agent/node/nodetest"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/jointoken"
	"github.com/sealmesh/sealmesh/lighthouse"
	"github.com/sealmesh/sealmesh/test/tools"
)

// seen records the manifests a follower hands its trust.
type seen struct {
	mu    sync.Mutex
	heads []string
}

func (s *seen) Follow(info *api.ManifestInfo) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.heads) == 0 || s.heads[len(s.heads)-1] != info.Head {
		s.heads = append(s.heads, info.Head)
	}
	return nil
}

func (s *seen) has(head string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.heads {
		if h == head {
			return true
		}
	}
	return false
}

// freeUDPPort is a UDP port nothing listens on (as of now).
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestLighthouseFollowsTheManifest: a running lighthouse hands every
// manifest it reads to its trust in coordinators (so a coordinator role the
// owner removes is no longer trusted) and renews onto a new manifest. Before,
// only the node agent refreshed its trust: the lighthouse kept trusting the
// coordinator roles of the manifest it started with.
func TestLighthouseFollowsTheManifest(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := nodetest.NewMesh(t, "1h")
	first := m.Coordinator.Status().Head
	client, token := m.Client, m.LighthouseToken
	trust := &seen{}
	logs := &tools.SyncBuffer{}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- lighthouse.Run(ctx, slog.New(slog.NewTextHandler(logs, nil)), client, lighthouse.Options{
			Token: token, ListenPort: freeUDPPort(t), Version: "test",
			Follower: &follow.Follower{Client: client, Trust: trust, Every: 100 * time.Millisecond, Log: slog.New(slog.DiscardHandler)},
		}, func() { close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("lighthouse: %v\n%s", err, logs)
	case <-time.After(time.Minute):
		t.Fatalf("lighthouse not up within a minute\n%s", logs)
	}
	waitFor(t, "the lighthouse's trust follows the first manifest", func() bool { return trust.has(first) })

	// The owner replaces the coordinator role (a rolling upgrade).
	second := m.SetManifest("coordinator-v2", first)
	waitFor(t, "the lighthouse's trust follows the update", func() bool { return trust.has(second) })
	waitFor(t, "the lighthouse renews onto the update", func() bool { return strings.Contains(logs.String(), second) })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	// The deadline only turns a hang into a failure.
	for deadline := time.Now().Add(time.Minute); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
	}
}

// TestTokenOfAnotherMeshIsNotSent: a lighthouse given a token that names
// another mesh than the coordinator serves stops at the nonce's answer: the
// coordinator never receives the secret, nor an enrolment.
func TestTokenOfAnotherMeshIsNotSent(t *testing.T) {
	m := nodetest.NewMesh(t, "1h")
	other, err := jointoken.New(strings.Repeat("e", 64))
	if err != nil {
		t.Fatal(err)
	}
	secret := other.String()[strings.LastIndex(other.String(), "-")+1:]
	var mu sync.Mutex
	var paths []string
	leaked := false
	h := m.Coordinator.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		paths = append(paths, r.URL.Path)
		leaked = leaked || strings.Contains(string(body)+r.URL.String(), secret)
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	err = lighthouse.Run(context.Background(), slog.New(slog.DiscardHandler), api.NewClient(srv.URL),
		lighthouse.Options{Token: other.String(), ListenPort: freeUDPPort(t), Version: "test"}, func() { t.Error("the lighthouse came up") })
	if !errors.Is(err, api.ErrWrongMesh) {
		t.Fatalf("lighthouse.Run = %v, want ErrWrongMesh", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if leaked || slices.Contains(paths, api.PathEnrol) {
		t.Fatalf("the coordinator of another mesh received %v (secret sent: %v)", paths, leaked)
	}
	if !slices.Contains(paths, api.PathNonce) {
		t.Fatalf("requests %v: the check is meant to be on the nonce's answer", paths)
	}
}
