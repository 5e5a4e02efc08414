package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/jointoken"
)

// withTokens sets the test manifest with extra join tokens added.
func withTokens(t *testing.T, h *harness, tokens ...map[string]any) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(testManifest(webDev.RootFingerprint())), &m); err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		m["joinTokens"] = append(m["joinTokens"].([]any), tok)
	}
	raw, _ := json.Marshal(m)
	req, err := ownerRequest(string(raw), h.c.Status().Head)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.SetManifest(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

// TestJoinTokenExpires: past its expiry a token admits no new host, and the
// host it admitted before renews with its certificate.
func TestJoinTokenExpires(t *testing.T) {
	ctx := context.Background()
	devices(t)
	h := readyHarness(t)
	tok, err := jointoken.New(h.c.MeshID())
	if err != nil {
		t.Fatal(err)
	}
	withTokens(t, h, map[string]any{"role": "lighthouse", "name": "lh1", "sha256": tok.Hash(), "expires": h.clock.now().Add(30 * time.Minute)})
	lh, err := enrol.Join(ctx, h.client, tok.String())
	if err != nil {
		t.Fatal(err)
	}
	h.clock.add(40 * time.Minute)
	if _, err := enrol.Join(ctx, h.client, tok.String()); !errors.Is(err, api.ErrRefused) || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("an expired token: %v, want refused as expired", err)
	}
	key, err := enrol.InMemory(lh.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := enrol.RenewCertificate(ctx, h.client, lh.Certificate, key); err != nil {
		t.Fatalf("renewal after the token expired: %v", err)
	}
}

// TestRenewalByCertificateIsForTokenHosts: a pod attested by evidence
// renews with evidence; its certificate alone renews nothing. Nor does an
// expired certificate.
func TestRenewalByCertificateIsForTokenHosts(t *testing.T) {
	ctx := context.Background()
	devices(t)
	h := readyHarness(t)
	pod, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Namespace: "prod", Name: "web-0"})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := enrol.InMemory(pod.PrivateKey)
	if _, err := enrol.RenewCertificate(ctx, h.client, pod.Certificate, key); !errors.Is(err, api.ErrRefused) || !strings.Contains(err.Error(), `role "web" admits no host by token`) {
		t.Fatalf("a pod's renewal by certificate: %v, want refused", err)
	}
	lh, err := enrol.Join(ctx, h.client, lighthouseToken(t, h))
	if err != nil {
		t.Fatal(err)
	}
	h.clock.add(2 * time.Hour)
	lhKey, _ := enrol.InMemory(lh.PrivateKey)
	if _, err := enrol.RenewCertificate(ctx, h.client, lh.Certificate, lhKey); !errors.Is(err, api.ErrRefused) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("renewal of an expired certificate: %v, want refused", err)
	}
}

// TestJoinTokenFailuresAreLimited: after a burst of wrong tokens from one
// source, that source's tokens are refused unchecked (even a right one)
// until its allowance refills; refusals are logged without the secret.
func TestJoinTokenFailuresAreLimited(t *testing.T) {
	ctx := context.Background()
	devices(t)
	h := readyHarness(t)
	var wrong []string
	for range 10 {
		tok, _ := jointoken.New(h.c.MeshID())
		wrong = append(wrong, tok.String())
		if _, err := enrol.Join(ctx, h.client, tok.String()); !errors.Is(err, api.ErrRefused) {
			t.Fatalf("a wrong token: %v, want refused", err)
		}
	}
	// Once, not with enrol's retries (it retries 429s).
	n, err := h.client.Nonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	priv, _, _ := enrol.KeyPair()
	req := proven(t, n, priv)
	req.JoinToken = lighthouseToken(t, h)
	if _, err := h.client.Enrol(ctx, req); !errors.Is(err, api.ErrRateLimited) {
		t.Fatalf("a right token after 10 wrong ones from one source: %v, want rate-limited", err)
	}
	h.clock.add(2 * time.Minute)
	if _, err := enrol.Join(ctx, h.client, lighthouseToken(t, h)); err != nil {
		t.Fatalf("a right token once the allowance refilled: %v", err)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "join token refused") {
		t.Fatalf("no refusal logged:\n%s", logs)
	}
	for _, w := range wrong {
		if strings.Contains(logs, secretOf(w)) {
			t.Fatalf("the log holds a wrong token's secret")
		}
	}
}
