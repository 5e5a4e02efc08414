package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/internal/serve"
)

// The CNI socket server: sealmesh-cni's calls (package cniapi), answered by
// the pod lifecycle.

// Serve answers the CNI plugin on the unix socket until ctx is done.
func (a *Agent) Serve(ctx context.Context, socket string) error {
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return err
	}
	os.Remove(socket) // a stale socket from a previous run
	l, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("listen %s: %w", socket, err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		l.Close()
		return err
	}
	a.serving.Store(true)
	defer a.serving.Store(false)
	return serve.Run(ctx, serve.Server(a.handler(), serve.Local), serve.Limit(l, serve.Local))
}

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	route := func(path string, f func(context.Context, *cniapi.Request) (any, error)) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			var req cniapi.Request
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				writeJSON(w, http.StatusBadRequest, cniapi.Error{Error: "bad request: " + err.Error()})
				return
			}
			out, err := f(r.Context(), &req)
			if err != nil {
				writeJSON(w, http.StatusInternalServerError, cniapi.Error{Error: err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, out)
		})
	}
	route("/v1/add", func(ctx context.Context, r *cniapi.Request) (any, error) { return a.Add(ctx, r) })
	route("/v1/del", func(ctx context.Context, r *cniapi.Request) (any, error) { return struct{}{}, a.Del(ctx, r) })
	route("/v1/check", func(ctx context.Context, r *cniapi.Request) (any, error) { return struct{}{}, a.Check(ctx, r) })
	mux.HandleFunc("POST /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status(r.Context()))
	})
	mux.HandleFunc("POST /v1/gc", func(w http.ResponseWriter, r *http.Request) {
		var req cniapi.GCRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<22))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, cniapi.Error{Error: "bad request: " + err.Error()})
			return
		}
		a.GC(r.Context(), req.Network, req.Valid)
		writeJSON(w, http.StatusOK, struct{}{})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
