// Package health serves /healthz (the process answers), /readyz (it can do its
// job) and, where given, /metrics.
package health

import (
	"context"
	"errors"
	"net/http"

	"github.com/sealmesh/sealmesh/internal/serve"
)

// Serve answers on addr until ctx is done; with metrics, also /metrics.
// ready says why the process is not ready (the body of a 503), nil when it is.
func Serve(ctx context.Context, addr string, ready func() error, metrics http.Handler) error {
	mux := http.NewServeMux()
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
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

// errNotReady is Flag's reason.
var errNotReady = errors.New("not ready")

// Flag adapts a yes-or-no readiness to Serve's.
func Flag(ready func() bool) func() error {
	return func() error {
		if ready() {
			return nil
		}
		return errNotReady
	}
}
