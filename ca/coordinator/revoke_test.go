package coordinator_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/ipam"
	"github.com/sealmesh/sealmesh/ca/owner"
)

// TestRevocationBlocksEveryCertificate: revoking a holder blocks every live
// certificate its key was issued, the renewed-away ones too, and refuses its
// key from then on. Before, only the fingerprint meshctl revoke named was
// blocked: the host's previous certificate (same key, same address) stayed
// valid for up to a third of the lifetime. Also invariant C's "a revoked key
// enrolled again".
func TestRevocationBlocksEveryCertificate(t *testing.T) {
	ctx := context.Background()
	h := readyHarness(t)
	first, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Namespace: "prod", Name: "web-0"})
	if err != nil {
		t.Fatal(err)
	}
	priv, pub, err := keyOf(t, first)
	if err != nil {
		t.Fatal(err)
	}
	key, err := enrol.InMemory(priv)
	if err != nil {
		t.Fatal(err)
	}
	h.clock.add(20 * time.Minute) // renewed a third of the way in
	renewed, err := enrol.Renew(ctx, h.client, webDev, api.Workload{Namespace: "prod", Name: "web-0"}, key)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.IP != first.IP {
		t.Fatalf("renewal moved %s to %s", first.IP, renewed.IP)
	}
	fp1, fp2 := fingerprintOf(t, first.Certificate), fingerprintOf(t, renewed.Certificate)
	if fp1 == fp2 {
		t.Fatal("renewal returned the same certificate")
	}

	// The owner revokes the current certificate and its key, as meshctl
	// revoke does.
	var m map[string]any
	if err := json.Unmarshal([]byte(testManifest(webDev.RootFingerprint())), &m); err != nil {
		t.Fatal(err)
	}
	m["revoked"] = []map[string]string{{"fingerprint": fp2, "holder": ipam.Holder(pub), "name": renewed.Name}}
	raw, _ := json.Marshal(m)
	req, err := owner.Request(raw, h.c.Status().Head, ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.SetManifest(ctx, req); err != nil {
		t.Fatal(err)
	}

	if _, err := enrol.Renew(ctx, h.client, webDev, api.Workload{Namespace: "prod", Name: "web-0"}, key); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("the revoked key renewed: %v", err)
	}
	other, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Namespace: "prod", Name: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, fp := range []string{fp1, fp2} {
		if !slices.Contains(other.Blocklist, fp) {
			t.Errorf("blocklist %v lacks %s", other.Blocklist, fp)
		}
	}
	if slices.Contains(other.Blocklist, fingerprintOf(t, other.Certificate)) {
		t.Error("the blocklist names an unrevoked host's certificate")
	}
}

// fingerprintOf is a certificate's fingerprint, not checked against a clock.
func fingerprintOf(t *testing.T, pem string) string {
	t.Helper()
	c, _, err := cert.UnmarshalCertificateFromPEM([]byte(pem))
	if err != nil {
		t.Fatal(err)
	}
	fp, err := c.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// revokeHolder has the owner revoke e's certificate and its key (holder), as
// meshctl revoke does.
func revokeHolder(t *testing.T, h *harness, pub []byte, e *enrol.Enrolment) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(testManifest(webDev.RootFingerprint())), &m); err != nil {
		t.Fatal(err)
	}
	m["revoked"] = []map[string]string{{"fingerprint": fingerprintOf(t, e.Certificate), "holder": ipam.Holder(pub), "name": e.Name}}
	raw, _ := json.Marshal(m)
	req, err := owner.Request(raw, h.c.Status().Head, ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.SetManifest(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}
