// Package health serves /healthz (the process answers), /readyz (it can do its
// job) and, where given, /metrics.
package health

import (
	"context"
	"net/http"

	"github.com/sealmesh/sealmesh/internal/serve"
)

// Serve answers on addr until ctx is done; with metrics, also /metrics.
func Serve(ctx context.Context, addr string, ready func() bool, metrics http.Handler) error {
	mux := http.NewServeMux()
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	l, err := serve.Listen("tcp", addr, serve.Health)
	if err != nil {
		return err
	}
	return serve.Run(ctx, serve.Server(mux, serve.Health), l)
}
