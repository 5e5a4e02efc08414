package e2e

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// TestManifestChangeReachesPods: a new manifest's firewall reaches running
// pods without restarting them: TCP between two pods stops when the owner
// allows only ICMP, and ICMP keeps working.
func TestManifestChangeReachesPods(t *testing.T) {
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
	listenTCP(t, b, 7001)
	var opened error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if opened = dialTCP(a, b.OverlayIP, 7001); opened == nil {
			break
		}
	}
	if opened != nil {
		t.Fatalf("tcp pod-a → pod-b before the change: %v", opened)
	}
	pidBefore := m.AgentPID

	raw, err := os.ReadFile(m.Path("manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man map[string]any
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	man["firewall"] = []any{map[string]any{"from": []string{"pods"}, "to": "pods", "proto": "icmp", "port": "any"}}
	raw, _ = json.Marshal(man)
	if err := os.WriteFile(m.Path("manifest-icmp.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Meshctl("manifest", "set", m.Path("manifest-icmp.json"), "--owner-key", m.Path("owner.key")); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	var denied time.Duration
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if dialTCP(a, b.OverlayIP, 7001) != nil {
			denied = time.Since(changed)
			break
		}
	}
	if denied == 0 {
		t.Fatalf("tcp pod-a → pod-b still allowed 60 s after the manifest allowed only icmp\n%s", m.Tail("agent.log"))
	}
	t.Logf("the new firewall applied %s after meshctl manifest set", denied.Round(100*time.Millisecond))
	if err := ping(a, b.OverlayIP); err != nil {
		t.Errorf("icmp after the change: %v", err)
	}
	if m.AgentPID != pidBefore {
		t.Error("the agent was restarted")
	}
}
