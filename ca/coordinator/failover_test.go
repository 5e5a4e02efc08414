package coordinator_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/test/tools"
)

// counted serves c and counts the requests it gets.
func counted(t *testing.T, dev *simulated.Device, c *coordinator.Coordinator) (string, *atomic.Int32) {
	var n atomic.Int32
	h := c.Handler()
	return tools.ServeAttested(t, dev, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})), &n
}

// Agents know several coordinators: an enrolment moves on from one that is
// gone or not ready, stops at a refusal, and a retry of the same key gets the
// same address wherever it lands.
func TestEnrolmentFailsOver(t *testing.T) {
	ctx := context.Background()
	p := setupPeers(t)
	b, _ := p.start(t, p.coordDev, t.TempDir(), nil)
	if err := b.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
		t.Fatal(err)
	}
	bURL, bCount := counted(t, p.coordDev, b)
	notReady, _ := p.start(t, p.coordDev, t.TempDir(), nil) // recovering: 503
	nrURL, nrCount := counted(t, p.coordDev, notReady)
	gone := "https://127.0.0.1:1"
	accept := attest.Accept{Platforms: []string{attest.PlatformSimulated}, Claims: func(*attest.Claims) error { return nil }} // the servers are the test's own
	client := func(urls ...string) *api.Client {
		return api.NewClient(strings.Join(urls, ","), atls.Transport(accept, nil))
	}

	e, err := enrol.Workload(ctx, client(gone, nrURL, bURL), webDev, api.Workload{})
	if err != nil {
		t.Fatalf("enrolment past a gone and a recovering coordinator: %v", err)
	}
	if nrCount.Load() == 0 || bCount.Load() == 0 {
		t.Fatalf("requests: recovering %d, ready %d; want both asked", nrCount.Load(), bCount.Load())
	}

	// A refusal of the evidence is final: the next coordinator is not asked.
	evil := &simulated.Device{}
	*evil = *webDev
	evil.Measurement = simulated.MeasurementOf("not-in-the-manifest")
	before := bCount.Load()
	aURL, aCount := counted(t, p.coordDev, p.a)
	if _, err := enrol.Workload(ctx, client(aURL, bURL), evil, api.Workload{}); err == nil || !strings.Contains(err.Error(), "matches no role") {
		t.Fatalf("unknown measurement: %v", err)
	}
	if aCount.Load() == 0 || bCount.Load() != before {
		t.Fatalf("after a refusal at A (%d requests), B got %d more", aCount.Load(), bCount.Load()-before)
	}

	// The same key at A, then again at B (an answer lost to a crash, say):
	// one address.
	priv, _, _ := enrol.KeyPair()
	enrolAt := func(c *coordinator.Coordinator) string {
		n, err := c.Nonce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		req := proven(t, n, priv)
		ev, _ := webDev.Evidence(attest.ReportData(req.Nonce, req.PublicKey, req.Binding()))
		req.Evidence = &api.Evidence{Platform: ev.Platform, Data: ev.Data}
		resp, err := c.Enrol(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.IP
	}
	ipA, ipB := enrolAt(p.a), enrolAt(b)
	if ipA != ipB || ipA == e.IP {
		t.Fatalf("the same key got %s at A and %s at B (the first workload has %s)", ipA, ipB, e.IP)
	}
}
