package coordinator_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/store"
)

// hangingPeer accepts connections and never answers; accepted is signalled
// on the first. It is closed when the test ends.
func hangingPeer(t *testing.T) (url string, accepted <-chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan struct{})
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if conns = append(conns, c); len(conns) == 1 {
				close(first)
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "https://" + l.Addr().String(), first
}

// TestProbesDoNotWaitForPeers: while a recovering coordinator asks a peer
// that accepts and never answers whether it is ready (meshctl recover
// without --force), /readyz and /metrics still answer. Before, Recover held
// the coordinator's lock across the peer call, with no timeout, and every
// probe and scrape waited behind it.
func TestProbesDoNotWaitForPeers(t *testing.T) {
	p := setupPeers(t)
	peer, accepted := hangingPeer(t)
	st, err := store.OpenFile(p.store)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := p.coordDev.SealingKey()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := coordinator.Open(ctx, coordinator.Config{Log: slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil)), Store: st,
		StateDir: t.TempDir(), SealingKey: key, Issuer: p.coordDev, Peers: []string{peer}})
	if err != nil {
		t.Fatal(err)
	}
	if c.State() != api.StateRecovering {
		t.Fatalf("state %s, want recovering", c.State())
	}
	if _, err := c.RecoveryKey(ctx); err != nil {
		t.Fatal(err)
	}
	recovered := make(chan error, 1)
	go func() {
		_, err := c.Recover(ctx, &api.RecoverRequest{Seed: p.share})
		recovered <- err
	}()
	select {
	case <-accepted:
	case err := <-recovered:
		t.Fatalf("Recover returned without asking the peer: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the coordinator never dialed its peer")
	}

	h := c.Handler()
	for _, path := range []string{"/readyz", "/healthz"} {
		answered := make(chan int, 1)
		go func() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			answered <- rec.Code
		}()
		// The peer holds its connection until the test ends: an answer
		// at all shows the probe does not wait for it. The deadline only
		// turns a hang into a failure.
		select {
		case code := <-answered:
			t.Logf("%s: %d while the peer hangs", path, code)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s waits for a peer that never answers", path)
		}
	}
	scraped := make(chan struct{})
	go func() {
		c.Metrics().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/metrics", nil))
		close(scraped)
	}()
	select {
	case <-scraped:
	case <-time.After(10 * time.Second):
		t.Fatal("/metrics waits for a peer that never answers")
	}
}
