package coordinator_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/coordinator"
)

// An enrolment's answer carries a nonce for the next one: an agent enrolling
// pod after pod asks for no nonce after its first, a spare is single use, and
// a spare the coordinator no longer honours costs a retry at the same
// coordinator, not a failure or a move to another.
func TestSpareNonce(t *testing.T) {
	if coordinator.NonceLifetime <= api.SpareNonceAge {
		t.Fatalf("nonces live %s, but clients keep spares for %s", coordinator.NonceLifetime, api.SpareNonceAge)
	}
	ctx := context.Background()
	h := readyHarness(t)
	var mu sync.Mutex
	calls := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls[r.URL.Path]++
		mu.Unlock()
		h.c.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	count := func() (nonces, enrols int) {
		mu.Lock()
		defer mu.Unlock()
		n, e := calls["/v1/nonce"], calls["/v1/enrol"]
		clear(calls)
		return n, e
	}
	client := api.NewClient(srv.URL)

	for i := range 3 {
		e, err := enrol.Workload(ctx, client, webDev, api.Workload{Namespace: "ns", Name: "pod"})
		if err != nil {
			t.Fatal(err)
		}
		if e.Next != nil {
			t.Fatal("the spare nonce was passed on to the caller")
		}
		want := 0
		if i == 0 {
			want = 1
		}
		if n, en := count(); n != want || en != 1 {
			t.Fatalf("enrolment %d: %d nonce and %d enrol calls, want %d and 1", i, n, en, want)
		}
	}

	// A spare is a nonce like any other: single use.
	n, err := h.c.Nonce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	priv, _, _ := enrol.KeyPair()
	enrolWith := func(nonce []byte) (*api.EnrolResponse, error) {
		req := proven(t, &api.NonceResponse{Nonce: nonce, PossessionKey: n.PossessionKey}, priv)
		ev, _ := webDev.Evidence(attest.ReportData(req.Nonce, req.PublicKey, req.Binding()))
		req.Evidence = &api.Evidence{Platform: ev.Platform, Data: ev.Data}
		return h.c.Enrol(ctx, req)
	}
	resp, err := enrolWith(n.Nonce)
	if err != nil || resp.Next == nil {
		t.Fatalf("enrolment: %v, spare %v", err, resp)
	}
	if _, err := enrolWith(resp.Next.Nonce); err != nil {
		t.Fatalf("with the spare: %v", err)
	}
	if _, err := enrolWith(resp.Next.Nonce); err == nil {
		t.Fatal("a spare nonce was honoured twice")
	}

	// The coordinator's nonces expire while the client still holds its
	// spare (as if it had restarted): one refused enrolment, a nonce asked
	// for, and the enrolment made again, all at this coordinator.
	count()
	h.clock.add(coordinator.NonceLifetime)
	if _, err := enrol.Workload(ctx, client, webDev, api.Workload{Namespace: "ns", Name: "pod"}); err != nil {
		t.Fatalf("enrolment after the spare expired: %v", err)
	}
	if n, en := count(); n != 1 || en != 2 {
		t.Fatalf("after the spare expired: %d nonce and %d enrol calls, want 1 and 2", n, en)
	}

}

// Finding 2 of the attack review: POST /v1/nonce is unauthenticated, and one
// client filled the table of 100,000 outstanding nonces in seconds, after
// which every enrolment and renewal got 503 for two minutes. Nonces are now
// stateless until a verified request redeems one, and a refused request
// leaves its nonce unredeemed (it can be replayed only into the same refusal).
func TestNonceFlood(t *testing.T) {
	ctx := context.Background()
	h := readyHarness(t)
	for range 2 * coordinator.MaxRedeemed {
		if _, err := h.c.Nonce(context.Background()); err != nil {
			t.Fatalf("a nonce during a flood: %v", err)
		}
	}
	if _, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Namespace: "ns", Name: "pod"}); err != nil {
		t.Fatalf("an enrolment after a flood of nonces: %v", err)
	}

	// Refused evidence does not use the nonce up; accepted evidence does.
	n, err := h.c.Nonce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	priv, _, _ := enrol.KeyPair()
	req := proven(t, n, priv)
	ev, _ := webDev.Evidence(attest.ReportData(req.Nonce, req.PublicKey, req.Binding()))
	req.Evidence = &api.Evidence{Platform: ev.Platform, Data: append([]byte("x"), ev.Data...)}
	if _, err := h.c.Enrol(ctx, req); err == nil {
		t.Fatal("mangled evidence enrolled")
	}
	req.Evidence.Data = ev.Data
	if _, err := h.c.Enrol(ctx, req); err != nil {
		t.Fatalf("the same nonce after a refusal: %v", err)
	}
	if _, err := h.c.Enrol(ctx, req); err == nil {
		t.Fatal("a redeemed nonce was honoured again")
	}
}

// The second half of finding 2: one source's requests are bounded, so it
// cannot take the coordinator's capacity from the others; probes are not.
func TestRatePerSource(t *testing.T) {
	h := newHarnessWith(t, newDirs(t), nil, func(c *coordinator.Config) { c.RatePerSource = 5 })
	h.create(t, testManifest(webDev.RootFingerprint()))
	handler := h.c.Handler()
	call := func(method, path, source string) int {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(method, path, nil)
		r.RemoteAddr = source + ":40000"
		handler.ServeHTTP(w, r)
		return w.Code
	}
	limited := 0
	for range 50 {
		if call(http.MethodPost, "/v1/nonce", "192.0.2.1") == http.StatusTooManyRequests {
			limited++
		}
	}
	// The clock of the harness stands still: exactly the burst is allowed.
	if limited != 40 {
		t.Fatalf("%d of 50 requests from one source limited, want 40 (a burst of 10)", limited)
	}
	if c := call(http.MethodPost, "/v1/nonce", "192.0.2.2"); c != http.StatusOK {
		t.Fatalf("another source: %d", c)
	}
	if c := call(http.MethodGet, "/readyz", "192.0.2.1"); c != http.StatusOK {
		t.Fatalf("a probe from the limited source: %d", c)
	}
	if !api.Retryable(&api.StatusError{Status: http.StatusTooManyRequests}) {
		t.Fatal("a client does not retry a 429")
	}
}
