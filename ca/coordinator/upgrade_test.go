package coordinator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest/simulated"
)

// withCoordinators puts coordinator roles for images into the test manifest.
func withCoordinators(images ...string) string {
	var roles []string
	for _, img := range images {
		roles = append(roles, fmt.Sprintf(`{"name": %q, "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}`,
			img, measurement(img), webDev.RootFingerprint()))
	}
	return strings.Replace(testManifest(webDev.RootFingerprint()), `"networks":`,
		`"coordinators": [`+strings.Join(roles, ", ")+`],
  "networks":`, 1)
}

// A rolling upgrade: the manifest names the old and the new coordinator image;
// new coordinators recover from old ones and old from new; once the owner
// removes the old role, an old coordinator gets no keys.
func TestRollingUpgrade(t *testing.T) {
	ctx := context.Background()
	p := setupPeers(t) // A runs "sealmesh-coordinator" (v1), the only role so far
	v2 := &simulated.Device{}
	*v2 = *p.coordDev
	v2.Measurement = simulated.MeasurementOf("sealmesh-coordinator-v2")

	// Before the manifest names v2, a v2 coordinator gets nothing.
	early, _ := p.start(t, v2, t.TempDir(), nil)
	if err := early.RecoverFromPeers(ctx, []string{p.aURL}); err == nil || !strings.Contains(err.Error(), "not a coordinator of manifest") {
		t.Fatalf("v2 before its role: %v", err)
	}

	both := strings.Replace(withCoordinators("sealmesh-coordinator", "sealmesh-coordinator-v2"), `"1h"`, `"2h"`, 1)
	req, err := ownerRequest(both, p.a.Status().Head)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.a.SetManifest(ctx, req); err != nil {
		t.Fatal(err)
	}
	// New from old.
	b, bURL := p.start(t, v2, t.TempDir(), nil)
	if err := b.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
		t.Fatalf("v2 from v1: %v", err)
	}
	// Old from new.
	a2, _ := p.start(t, p.coordDev, t.TempDir(), nil)
	if err := a2.RecoverFromPeers(ctx, []string{bURL}); err != nil {
		t.Fatalf("v1 from v2: %v", err)
	}

	// The owner removes v1: from the next request on, v1 gets nothing.
	onlyNew := strings.Replace(withCoordinators("sealmesh-coordinator-v2"), `"1h"`, `"3h"`, 1)
	req, err = ownerRequest(onlyNew, b.Status().Head)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.SetManifest(ctx, req); err != nil {
		t.Fatal(err)
	}
	old, _ := p.start(t, p.coordDev, t.TempDir(), nil)
	err = old.RecoverFromPeers(ctx, []string{bURL})
	if err == nil || !strings.Contains(err.Error(), "refused: not a coordinator of manifest") || old.Status().State == api.StateReady {
		t.Fatalf("v1 after its role was removed: %v, %s", err, old.Status().State)
	}
}
