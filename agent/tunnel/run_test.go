package tunnel

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// controlServer answers a control socket at path as a tunnel host's API
// does for the calls below, and counts the connections it accepts.
func controlServer(t *testing.T, path string) (conns *atomic.Int32, stop func()) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conns = &atomic.Int32{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tunnels", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]InstanceInfo{{ID: "a"}})
	})
	mux.HandleFunc("PUT /v1/tunnels/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	})
	mux.HandleFunc("POST /v1/tunnels/{id}/prove", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string][]byte{"proof": []byte("p")})
	})
	srv := &http.Server{Handler: mux, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go srv.Serve(l)
	stop = func() { srv.Close() }
	t.Cleanup(stop)
	return conns, stop
}

// The agent's calls to a tunnel host reuse one connection instead of
// dialling for each (a pod's ADD paid about 1.3 ms for a new one), whatever
// the call reads of its answer; a host restarted on the same socket is
// reached again.
func TestControlCallsReuseTheirConnection(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.sock")
	conns, stop := controlServer(t, path)
	calls := []func() error{
		func() error { _, err := AddInstance(ctx, path, "a", &AddRequest{}); return err },
		func() error { _, err := Instances(ctx, path); return err },
		func() error { _, err := ProveInstance(ctx, path, "a", &ProveRequest{}); return err },
	}
	for range 3 {
		for _, call := range calls {
			if err := call(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("9 calls in sequence made %d connections, want 1", n)
	}

	stop()
	conns, _ = controlServer(t, path)
	for _, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("after the host restarted: %v", err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("3 calls to the restarted host made %d connections, want 1", n)
	}
}

// BenchmarkControlCall: one call to a tunnel host's control socket on the
// connection kept from the last (reused) and on a new one each time
// (fresh, as every call made one before the pool): the difference is what
// the pool saves each call.
func BenchmarkControlCall(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "c.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	})}
	go srv.Serve(l)
	defer srv.Close()
	for _, fresh := range []bool{false, true} {
		name := "reused"
		if fresh {
			name = "fresh"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if fresh {
					controls.CloseIdleConnections()
				}
				if _, err := AddInstance(ctx, path, "a", &AddRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
