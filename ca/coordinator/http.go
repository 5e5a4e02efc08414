package coordinator

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sealmesh/sealmesh/ca/api"
)

// maxBody bounds request bodies; evidence with its certificate chain is a few KiB.
const maxBody = 1 << 20

// Handler serves the protocol of package api.
func (c *Coordinator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/manifest", func(w http.ResponseWriter, r *http.Request) {
		var req api.ManifestRequest
		if err := decode(w, r, &req); err != nil {
			writeErr(w, err)
			return
		}
		resp, err := c.SetManifest(r.Context(), &req)
		reply(w, resp, err)
	})
	mux.HandleFunc("GET /v1/manifest", func(w http.ResponseWriter, r *http.Request) {
		m, err := c.Manifest()
		reply(w, m, err)
	})
	mux.HandleFunc("GET /v1/history", func(w http.ResponseWriter, r *http.Request) {
		h, err := c.History(r.Context())
		reply(w, h, err)
	})
	mux.HandleFunc("POST /v1/unlock", func(w http.ResponseWriter, r *http.Request) {
		var req api.UnlockRequest
		if err := decode(w, r, &req); err != nil {
			writeErr(w, err)
			return
		}
		s, err := c.Unlock(r.Context(), req.UnlockKey)
		reply(w, s, err)
	})
	mux.HandleFunc("POST /v1/unlock-key", func(w http.ResponseWriter, r *http.Request) {
		var req api.UnlockRequest
		if err := decode(w, r, &req); err != nil {
			writeErr(w, err)
			return
		}
		k, err := c.RotateUnlockKey(req.UnlockKey)
		reply(w, &api.UnlockKeyResponse{UnlockKey: k}, err)
	})
	mux.HandleFunc("GET /v1/recovery-key", func(w http.ResponseWriter, r *http.Request) {
		k, err := c.RecoveryKey()
		reply(w, &api.RecoveryKey{PublicKey: k}, err)
	})
	mux.HandleFunc("POST /v1/recover", func(w http.ResponseWriter, r *http.Request) {
		var req api.RecoverRequest
		if err := decode(w, r, &req); err != nil {
			writeErr(w, err)
			return
		}
		resp, err := c.Recover(r.Context(), &req)
		reply(w, resp, err)
	})
	mux.HandleFunc("POST /v1/nonce", func(w http.ResponseWriter, r *http.Request) {
		n, err := c.Nonce()
		reply(w, n, err)
	})
	mux.HandleFunc("POST /v1/enrol", func(w http.ResponseWriter, r *http.Request) {
		var req api.EnrolRequest
		if err := decode(w, r, &req); err != nil {
			writeErr(w, err)
			return
		}
		resp, err := c.Enrol(&req)
		reply(w, resp, err)
	})
	mux.HandleFunc("POST /v1/release", func(w http.ResponseWriter, r *http.Request) {
		var req api.ReleaseRequest
		if err := decode(w, r, &req); err != nil {
			writeErr(w, err)
			return
		}
		reply(w, struct{}{}, c.Release(&req))
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		reply(w, c.Status(), nil)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !c.Ready() {
			http.Error(w, c.Status().State, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
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
