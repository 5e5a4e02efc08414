package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestRevoke: meshctl revoke puts a pod's certificate and key on the
// manifest's revoked list; every agent hands its tunnels the block list, which
// close the revoked pod's tunnels within seconds; other pods keep talking, and
// the revoked key gets no new certificate.
func TestRevoke(t *testing.T) {
	m := up(t)
	ctx := context.Background()
	a, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.AddPod(ctx, "pod-b")
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.AddPod(ctx, "pod-c")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := a.NS.Ping(b.OverlayIP, 3, 5*time.Second); err != nil || r.Received == 0 {
		t.Fatalf("pod-a → pod-b before: %v %v", r, err)
	}
	if r, err := a.NS.Ping(c.OverlayIP, 3, 5*time.Second); err != nil || r.Received == 0 {
		t.Fatalf("pod-a → pod-c before: %v %v", r, err)
	}

	out, err := m.Meshctl("revoke", "demo/pod-b", "--owner-key", m.Path("owner.key"))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(out))
	revoked := time.Now()

	// pod-b is cut off: pings fail from some point on, for good.
	var cut time.Duration
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		r, _ := a.NS.Ping(b.OverlayIP, 2, time.Second)
		if r.Received == 0 {
			cut = time.Since(revoked)
			break
		}
	}
	if cut == 0 {
		t.Fatalf("pod-a still reaches the revoked pod-b 60 s after the revocation\nagent log:\n%s", m.Tail("agent.log"))
	}
	t.Logf("pod-b cut off %s after meshctl revoke", cut.Round(100*time.Millisecond))
	if r, _ := a.NS.Ping(b.OverlayIP, 4, 4*time.Second); r.Received != 0 {
		t.Errorf("pod-a reached pod-b again after it was cut off: %v", r)
	}
	if r, _ := b.NS.Ping(c.OverlayIP, 4, 4*time.Second); r.Received != 0 {
		t.Errorf("the revoked pod-b reaches pod-c: %v", r)
	}
	if r, err := a.NS.Ping(c.OverlayIP, 3, 5*time.Second); err != nil || r.Received == 0 {
		t.Errorf("pod-a → pod-c after the revocation: %v %v", r, err)
	}
	if log := m.Tail("agent.log"); !strings.Contains(log, "revoked") {
		t.Errorf("pod-b's renewal was not refused as revoked:\n%s", log)
	}
}
