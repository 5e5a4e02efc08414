package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
)

// setCA sets the test manifest with ca (nil: none) as the next transition.
func setCA(t *testing.T, h *harness, ca map[string]any) (*api.ManifestResponse, error) {
	t.Helper()
	var m map[string]any
	json.Unmarshal([]byte(testManifest(webDev.RootFingerprint())), &m)
	if ca != nil {
		m["ca"] = ca
	}
	raw, _ := json.Marshal(m)
	req, err := ownerRequest(string(raw), h.c.Status().Head)
	if err != nil {
		t.Fatal(err)
	}
	return h.client.SetManifest(context.Background(), req)
}

// trusts is the number of CA certificates in an answer's trust, and
// whether the CA with this fingerprint is one of them.
func trusts(t *testing.T, trustPEM, caFingerprint string) (int, bool) {
	t.Helper()
	pool, err := cert.NewCAPoolFromPEM([]byte(trustPEM))
	if err != nil {
		t.Fatal(err)
	}
	n := len(pool.CAs)
	_, ok := pool.CAs[caFingerprint]
	return n, ok
}

func issuer(t *testing.T, pemCert string) string {
	t.Helper()
	c, _, err := cert.UnmarshalCertificateFromPEM([]byte(pemCert))
	if err != nil {
		t.Fatal(err)
	}
	return c.Issuer()
}

// TestCARotation: the first step adds CA generation 2 (a new CA, from the
// seed) while hosts trust both: new certificates are issued under it, a
// host renews with its generation-1 certificate; a coordinator restarted
// between the steps serves the same; the second step trusts generation 2
// alone, and a generation-1 certificate renews nothing. Steps out of order
// are refused.
func TestCARotation(t *testing.T) {
	ctx := context.Background()
	devices(t)
	d := newDirs(t)
	h := newHarness(t, d, nil)
	created := h.create(t, testManifest(webDev.RootFingerprint()))
	ca1 := h.c.Status().CAFingerprint
	lh, err := enrol.Join(ctx, h.client, lighthouseToken(t, h))
	if err != nil {
		t.Fatal(err)
	}
	lhKey, _ := enrol.InMemory(lh.PrivateKey)
	if issuer(t, lh.Certificate) != ca1 {
		t.Fatal("the lighthouse's certificate is not under the first CA")
	}

	// Out of order: the next generation without trusting the current.
	if _, err := setCA(t, h, map[string]any{"generation": 2}); !errors.Is(err, api.ErrBadInput) || !strings.Contains(err.Error(), "must first trust generation 1") {
		t.Fatalf("skipping the first step: %v", err)
	}
	if _, err := setCA(t, h, map[string]any{"generation": 3, "trustPrevious": true}); !errors.Is(err, api.ErrBadInput) {
		t.Fatalf("two generations at once: %v", err)
	}

	// Step one.
	resp, err := setCA(t, h, map[string]any{"generation": 2, "trustPrevious": true})
	if err != nil {
		t.Fatal(err)
	}
	ca2 := resp.Status.CAFingerprint
	if ca2 == ca1 || ca2 == "" {
		t.Fatalf("step one kept CA %s", ca2)
	}
	pod, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Namespace: "prod", Name: "web-0"})
	if err != nil {
		t.Fatal(err)
	}
	if issuer(t, pod.Certificate) != ca2 {
		t.Fatal("a new certificate is not under generation 2")
	}
	if n, ok := trusts(t, pod.CA, ca1); n != 2 || !ok {
		t.Fatalf("hosts trust %d CAs (generation 1 among them: %v), want both generations", n, ok)
	}
	renewed, err := enrol.RenewCertificate(ctx, h.client, lh.Certificate, lhKey)
	if err != nil {
		t.Fatalf("renewing a generation-1 certificate during the rotation: %v", err)
	}
	if issuer(t, renewed.Certificate) != ca2 {
		t.Fatal("the renewal is not under generation 2")
	}

	// A coordinator restarted between the steps: the same CA and trust.
	h.srv.Close()
	h2 := newHarness(t, d, nil)
	if _, err := h2.client.Unlock(ctx, created.UnlockKey); err != nil {
		t.Fatal(err)
	}
	if st := h2.c.Status(); st.State != api.StateReady || st.CAFingerprint != ca2 {
		t.Fatalf("restarted between the steps: %s, CA %s; want ready under %s", st.State, st.CAFingerprint, ca2)
	}
	again, err := enrol.Workload(ctx, h2.client, webDev, api.Workload{Namespace: "prod", Name: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := trusts(t, again.CA, ca1); n != 2 || issuer(t, again.Certificate) != ca2 {
		t.Fatalf("after the restart: %d CAs trusted, issued under %s", n, issuer(t, again.Certificate))
	}

	// Step two.
	if _, err := setCA(t, h2, map[string]any{"generation": 2}); err != nil {
		t.Fatal(err)
	}
	after, err := enrol.Workload(ctx, h2.client, webDev, api.Workload{Namespace: "prod", Name: "web-2"})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := trusts(t, after.CA, ca1); n != 1 || ok {
		t.Fatalf("after --finish hosts trust %d CAs (generation 1 among them: %v), want generation 2 alone", n, ok)
	}
	if _, err := enrol.RenewCertificate(ctx, h2.client, lh.Certificate, lhKey); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("a generation-1 certificate after the rotation: %v, want refused", err)
	}
	if _, err := enrol.RenewCertificate(ctx, h2.client, renewed.Certificate, lhKey); err != nil {
		t.Fatalf("a generation-2 certificate after the rotation: %v", err)
	}
	if _, err := setCA(t, h2, map[string]any{"generation": 2, "trustPrevious": true}); !errors.Is(err, api.ErrBadInput) {
		t.Fatalf("trusting generation 1 again: %v", err)
	}
}
