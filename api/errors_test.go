package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sealmesh/sealmesh/api"
)

// TestErrorCodesCrossTheWire: a client tells failures apart by their code,
// never by their message: a refusal whose message mentions a nonce is not a
// nonce refusal (before, the client looked for the word "nonce").
func TestErrorCodesCrossTheWire(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		status    int
		is        *api.Fault
		nonce     bool
		retryable bool
	}{
		{"nonce expired", fmt.Errorf("%w: nonce expired; ask for a new one", api.ErrNonce), 403, api.ErrRefused, true, true},
		{"refusal naming a nonce", fmt.Errorf("%w: evidence is not bound to this nonce and key", api.ErrRefused), 403, api.ErrRefused, false, false},
		{"stale parent", fmt.Errorf("%w: the head moved", api.ErrStaleParent), 409, api.ErrConflict, false, false},
		{"not ready", fmt.Errorf("%w: locked", api.ErrNotReady), 503, api.ErrNotReady, false, true},
		{"bad request", errors.Join(api.ErrBadInput, errors.New("unknown field")), 400, api.ErrBadInput, false, false},
		{"internal", errors.New("disk on fire"), 500, api.ErrInternal, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { api.WriteError(w, tc.err) }))
			defer srv.Close()
			_, err := api.NewClient(srv.URL, nil).Status(context.Background())
			var se *api.StatusError
			if !errors.As(err, &se) || se.Status != tc.status || se.Code != api.FaultOf(tc.err).Code {
				t.Fatalf("got %#v, want status %d code %s", err, tc.status, api.FaultOf(tc.err).Code)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %s) = false", err, tc.is.Code)
			}
			if got := api.NonceRefused(err); got != tc.nonce {
				t.Errorf("NonceRefused = %v, want %v", got, tc.nonce)
			}
			if got := api.Retryable(err); got != tc.retryable {
				t.Errorf("Retryable = %v, want %v", got, tc.retryable)
			}
		})
	}
}

// TestHostNamed: a host is named by fingerprint, certificate name, overlay IP
// or pod, and by nothing else.
func TestHostNamed(t *testing.T) {
	h := api.Host{Name: "web-10-42-0-2", IP: "10.42.0.2", Fingerprint: "ab12", Workload: "shop/web-0"}
	for what, want := range map[string]bool{
		"web-10-42-0-2": true, "10.42.0.2": true, "ab12": true, "shop/web-0": true,
		"10.42.0.2/16": false, "web": false, "": false, "shop/web-1": false,
	} {
		if got := h.Named(what); got != want {
			t.Errorf("Named(%q) = %v, want %v", what, got, want)
		}
	}
	if (&api.Host{Name: "lighthouse-1"}).Named("") {
		t.Error(`a host without a pod is named by ""`)
	}
}
