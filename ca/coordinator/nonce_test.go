package coordinator_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/api"
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
	n, err := h.c.Nonce()
	if err != nil {
		t.Fatal(err)
	}
	_, pub, _ := enrol.KeyPair()
	enrolWith := func(nonce []byte) (*api.EnrolResponse, error) {
		req := &api.EnrolRequest{Nonce: nonce, PublicKey: pub}
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

	// Spares take at most half the nonce table: past that an answer carries
	// none, and nonces asked for are still given.
	for range coordinator.MaxNonces / 2 {
		if _, err := h.c.Nonce(); err != nil {
			t.Fatal(err)
		}
	}
	n, err = h.c.Nonce()
	if err != nil {
		t.Fatal(err)
	}
	_, pub, _ = enrol.KeyPair()
	if resp, err := enrolWith(n.Nonce); err != nil || resp.Next != nil {
		t.Fatalf("with half the nonce table taken: %v, spare %v", err, resp.Next)
	}
	if _, err := h.c.Nonce(); err != nil {
		t.Fatalf("a nonce asked for with half the table taken: %v", err)
	}
}
