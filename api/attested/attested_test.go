package attested_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/api/attested"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/test/tools"
)

func role(name string, d *simulated.Device) string {
	return fmt.Sprintf(`{"name": %q, "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}`,
		name, hex.EncodeToString(d.Measurement[:]), d.RootFingerprint())
}

// TestTrustOnlyNarrows: a client's configured policy bounds whom it trusts;
// the manifest narrows it and never widens it. With images A and B in its
// policy, a client trusts B only once the manifest names B (a rolling
// upgrade) and stops trusting A when the manifest drops A; a coordinator the
// manifest adds but the policy does not name (here a simulated TEE of
// another chip, which anyone can run) is refused however the manifest reads.
// Before, the manifest's roles replaced the client's policy.
func TestTrustOnlyNarrows(t *testing.T) {
	ctx := context.Background()
	a, err := simulated.New(simulated.MeasurementOf("coordinator-v1"))
	if err != nil {
		t.Fatal(err)
	}
	b := &simulated.Device{}
	*b = *a
	b.Measurement = simulated.MeasurementOf("coordinator-v2")
	rogue, err := simulated.New(simulated.MeasurementOf("coordinator-v1"))
	if err != nil {
		t.Fatal(err)
	}

	key, _, pub, _ := owner.NewOwnerKey()
	manifest := func(roles ...string) []byte {
		return []byte(fmt.Sprintf(`{"version": 1, "owners": [{"name": "o", "key": %q}], "networks": ["10.42.0.0/24"],
 "roles": [{"name": "web", "groups": ["web"], "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}],
 "coordinators": [%s],
 "lighthouses": [{"name": "lh", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh", "sha256": %q}]}`,
			pub, strings.Repeat("0", 96), a.RootFingerprint(), strings.Join(roles, ","), strings.Repeat("a", 64)))
	}
	st, _ := store.OpenFile(t.TempDir())
	c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	set := func(raw []byte) {
		t.Helper()
		req, err := owner.Request(raw, c.Status().Head, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SetManifest(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	set(manifest(role("v1", a)))
	urlA, urlB, urlRogue := tools.ServeAttested(t, a, c.Handler()), tools.ServeAttested(t, b, c.Handler()), tools.ServeAttested(t, rogue, c.Handler())

	// The data owner's policy: images v1 and v2 on the genuine chip.
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policy, []byte(fmt.Sprintf("simulated:\n  measurements: [%s, %s]\n  rootFingerprint: %s\n",
		hex.EncodeToString(a.Measurement[:]), hex.EncodeToString(b.Measurement[:]), a.RootFingerprint())), 0o600)
	clientA, trust, err := attested.Client(urlA, policy)
	if err != nil {
		t.Fatal(err)
	}
	clientB := api.NewClient(urlB, atls.Transport(trust, nil))
	clientRogue := api.NewClient(urlRogue, atls.Transport(trust, nil))
	talks := func(cl *api.Client) error { _, err := cl.Status(ctx); return err }

	if err := talks(clientA); err != nil {
		t.Fatalf("A with its own policy: %v", err)
	}
	if err := trust.Refresh(ctx, clientA); err != nil {
		t.Fatal(err)
	}
	if err := talks(clientB); err == nil || !strings.Contains(err.Error(), "matches no coordinator role") {
		t.Fatalf("B before the manifest names it: %v", err)
	}
	// The manifest names the rogue chip's coordinator too: still refused.
	set(manifest(role("v1", a), role("v2", b), role("rogue", rogue)))
	if err := trust.Refresh(ctx, clientA); err != nil {
		t.Fatal(err)
	}
	if err := talks(clientB); err != nil {
		t.Fatalf("B after the manifest added its role: %v", err)
	}
	if err := talks(clientRogue); err == nil || !strings.Contains(err.Error(), "configured policy") {
		t.Fatalf("a coordinator the manifest added and the policy does not name: %v", err)
	}
	set(manifest(role("v2", b)))
	if err := trust.Refresh(ctx, clientB); err != nil {
		t.Fatal(err)
	}
	if err := talks(clientA); err == nil || !strings.Contains(err.Error(), "matches no coordinator role") {
		t.Fatalf("A after the manifest removed its role: %v", err)
	}
}

// Issue 28: plain http:// against an attested-TLS coordinator said only
// "400 Bad Request"; a missing policy file did not name its flag.
func TestClientMistakesNamed(t *testing.T) {
	d, err := simulated.New(simulated.MeasurementOf("coordinator"))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := store.OpenFile(t.TempDir())
	c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	url := tools.ServeAttested(t, d, c.Handler())
	plain, _, err := attested.Client(strings.Replace(url, "https://", "http://", 1), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Status(context.Background()); err == nil || !strings.Contains(err.Error(), "this coordinator speaks attested TLS; use https:// and --coordinator-policy-file") {
		t.Errorf("http:// to attested TLS: %v", err)
	}
	if _, _, err := attested.Client(url, filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.HasPrefix(err.Error(), "--coordinator-policy-file: ") {
		t.Errorf("missing policy file: %v", err)
	}
}
