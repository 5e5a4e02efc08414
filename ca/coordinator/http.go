package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sealmesh/sealmesh/ca/api"
	"github.com/sealmesh/sealmesh/internal/ratelimit"
)

// maxBody bounds request bodies; evidence with its certificate chain is a few KiB.
const maxBody = 1 << 20

// Handler serves the protocol of package api.
func (c *Coordinator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/manifest", post(c.SetManifest))
	mux.HandleFunc("POST /v1/enrol", post(c.Enrol))
	mux.HandleFunc("POST /v1/release", post(func(ctx context.Context, r *api.ReleaseRequest) (struct{}, error) {
		return struct{}{}, c.Release(ctx, r)
	}))
	mux.HandleFunc("POST /v1/unlock", post(func(ctx context.Context, r *api.UnlockRequest) (*api.Status, error) {
		return c.Unlock(ctx, r.UnlockKey)
	}))
	mux.HandleFunc("POST /v1/unlock-key", post(func(_ context.Context, r *api.UnlockRequest) (*api.UnlockKeyResponse, error) {
		k, err := c.RotateUnlockKey(r.UnlockKey)
		return &api.UnlockKeyResponse{UnlockKey: k}, err
	}))
	mux.HandleFunc("POST /v1/recover", post(c.Recover))
	mux.HandleFunc("POST /v1/seed-shares", post(c.SeedShares))
	mux.HandleFunc("POST /v1/peer/keys", post(c.PeerKeys))
	mux.HandleFunc("POST /v1/nonce", get(func(context.Context) (*api.NonceResponse, error) { return c.Nonce() }))
	mux.HandleFunc("GET /v1/manifest", get(func(context.Context) (*api.ManifestInfo, error) { return c.Manifest() }))
	mux.HandleFunc("GET /v1/history", get(c.History))
	mux.HandleFunc("GET /v1/recovery-key", get(func(context.Context) (*api.RecoveryKey, error) {
		k, err := c.RecoveryKey()
		return &api.RecoveryKey{PublicKey: k}, err
	}))
	mux.HandleFunc("GET /v1/status", get(func(context.Context) (*api.Status, error) { return c.PublicStatus(), nil }))
	mux.HandleFunc("POST /v1/hosts", post(c.Hosts))
	// Probes are not limited: a kubelet behind the same address as a busy
	// agent must still see the coordinator.
	probes := http.NewServeMux()
	probes.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	probes.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !c.Ready() {
			http.Error(w, c.State(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	probes.Handle("/", ratelimit.New(c.cfg.RatePerSource, c.now).Handler(mux))
	return probes
}

// post serves a call whose request is a JSON body.
func post[Req, Resp any](f func(context.Context, *Req) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decode(w, r, &req); err != nil {
			writeErr(w, err)
			return
		}
		resp, err := f(r.Context(), &req)
		reply(w, resp, err)
	}
}

// get serves a call without a request body.
func get[Resp any](f func(context.Context) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		resp, err := f(r.Context())
		reply(w, resp, err)
	}
}

// decode reads a JSON body strictly: a field the protocol does not have (a
// requested name, IP or groups, say) is an error, not silently dropped.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.Join(ErrBadInput, err)
	}
	return nil
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadInput):
		code = http.StatusBadRequest
	case errors.Is(err, ErrRefused):
		code = http.StatusForbidden
	case errors.Is(err, ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, ErrNotReady):
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(api.Error{Error: err.Error()})
}
