package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
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

// TestRevocationsSurviveManifestUpdates: re-applying the owner's manifest
// file (which never had the revocation meshctl revoke added) is refused with
// the revocation named, and the revoked key stays refused; naming it in
// unrevoke lifts it. An unchanged manifest is no new generation. Before, the
// old file silently un-revoked the key and it was issued a certificate again.
func TestRevocationsSurviveManifestUpdates(t *testing.T) {
	ctx := context.Background()
	h := readyHarness(t)
	w := api.Workload{Namespace: "prod", Name: "web-0"}
	e, err := enrol.Workload(ctx, h.client, webDev, w)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub, err := keyOf(t, e)
	if err != nil {
		t.Fatal(err)
	}
	key, err := enrol.InMemory(priv)
	if err != nil {
		t.Fatal(err)
	}
	revokeHolder(t, h, pub, e)
	revoked := h.c.Status()
	for _, host := range h.c.StatusOf(w.Namespace + "/" + w.Name).Hosts {
		if !host.Revoked {
			t.Errorf("status does not mark the revoked host %s", host.Name)
		}
	}

	// The owner's file, as it was before the revocation.
	req, err := owner.Request([]byte(testManifest(webDev.RootFingerprint())), revoked.Head, ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.client.SetManifest(ctx, req)
	if !errors.Is(err, api.ErrRevocationDropped) || !strings.Contains(err.Error(), fingerprintOf(t, e.Certificate)) {
		t.Fatalf("re-applying the file without the revocation: %v, want revocation-dropped naming it", err)
	}
	if st := h.c.Status(); st.Head != revoked.Head || st.Generation != revoked.Generation {
		t.Fatalf("the refused update moved the head to %s (generation %d)", st.Head, st.Generation)
	}
	if _, err := enrol.Renew(ctx, h.client, webDev, w, key); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("the revoked key enrolled after the refused update: %v", err)
	}

	// The current manifest again: no new generation.
	cur, err := h.client.Manifest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	same, err := owner.Request(cur.Manifest, cur.Head, ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.client.SetManifest(ctx, same)
	if err != nil || !resp.Unchanged || resp.Status.Generation != revoked.Generation {
		t.Fatalf("unchanged manifest: %+v, %v; want unchanged at generation %d", resp, err, revoked.Generation)
	}

	// Lifting it on purpose.
	req.Unrevoke = []string{fingerprintOf(t, e.Certificate)}
	if _, err := h.client.SetManifest(ctx, req); err != nil {
		t.Fatalf("update naming the revocation it lifts: %v", err)
	}
	if _, err := enrol.Renew(ctx, h.client, webDev, w, key); err != nil {
		t.Fatalf("the key after its revocation was lifted: %v", err)
	}
}
