package coordinator_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
)

// Finding 5 of the attack review: re-enrolment was keyed by the public key
// alone, so a workload of the same role that enrolled a victim's public key
// (which every peer of the victim sees) got the victim's lease and a fresh
// release token, and released it. An enrolment now proves possession of the
// private key, and the victim's lease, address and release token stay its own.
func TestEnrolmentProvesPossession(t *testing.T) {
	ctx := context.Background()
	h := readyHarness(t)
	victim, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Namespace: "prod", Name: "web-0"})
	if err != nil {
		t.Fatal(err)
	}
	_, victimPub, _ := keyOf(t, victim)

	// The attacker proves its own role with its own evidence, and proves
	// possession of its own key while asking for the victim's.
	attackerPriv, _, _ := enrol.KeyPair()
	n, err := h.client.Nonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := proven(t, n, attackerPriv)
	req.PublicKey = victimPub
	req.Workload = api.Workload{Namespace: "prod", Name: "web-1"}
	ev, _ := webDev.Evidence(attest.ReportData(req.Nonce, req.PublicKey, req.Binding()))
	req.Evidence = &api.Evidence{Platform: ev.Platform, Data: ev.Data}
	if _, err := h.client.Enrol(ctx, req); err == nil || !strings.Contains(err.Error(), "no proof of possession") {
		t.Fatalf("the victim's public key enrolled by another: %v", err)
	}

	st := h.c.StatusOf(victim.IP[:strings.IndexByte(victim.IP, '/')])
	if len(st.Hosts) != 1 || st.Hosts[0].Fingerprint != fingerprintOf(t, victim.Certificate) {
		t.Fatalf("the victim's lease changed: %+v", st.Hosts)
	}
	if err := h.client.Release(ctx, &api.ReleaseRequest{Fingerprint: fingerprintOf(t, victim.Certificate), ReleaseToken: victim.ReleaseToken, IP: victim.IP}); err != nil {
		t.Fatalf("the victim's own release: %v", err)
	}

	// The key's holder renews with a proof from wherever the key is kept.
	key, err := enrol.InMemory(victim.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enrol.Renew(ctx, h.client, webDev, api.Workload{Namespace: "prod", Name: "web-0"}, key); err != nil {
		t.Fatalf("the holder's renewal: %v", err)
	}
}
