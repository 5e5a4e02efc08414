package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAgentMetrics: the agent's /metrics carries its own figures, Nebula's
// metrics of the tunnel process the pods share (labelled with it), and each
// pod's number of Nebula tunnels (labelled with the pod), through its one
// listener.
func TestAgentMetrics(t *testing.T) {
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
	if r, err := a.NS.Ping(b.OverlayIP, 3, 5*time.Second); err != nil || r.Received == 0 {
		t.Fatalf("ping: %v %v", r, err)
	}
	body, err := m.AgentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"sealmesh_agent_pods 2",
		`sealmesh_agent_enrolments_total{result="ok"} 2`,
		"sealmesh_agent_coordinator_contact_age_seconds",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	tun, err := m.Tunnel(a)
	if err != nil {
		t.Fatal(err)
	}
	if re := regexp.MustCompile(`(?m)^nebula_handshake_manager_initiated\{[^}]*tunnel="` + tun.ID + `"`); !re.MatchString(body) {
		t.Errorf("/metrics has no Nebula handshake counter of tunnel process %s", tun.ID)
	}
	if strings.Contains(body, "nebula_hostmap_main_hosts") {
		t.Error("/metrics carries Nebula's hostmap gauge, which instances sharing a process overwrite")
	}
	for _, pod := range []string{"pod-a", "pod-b"} {
		// Each pod has a tunnel with the lighthouse and with the other pod
		// (and may have one with the relay, which is the lighthouse).
		re := regexp.MustCompile(`(?m)^sealmesh_agent_pod_nebula_tunnels\{[^}]*pod_name="` + pod + `"[^}]*\} ([0-9]+)`)
		if g := re.FindStringSubmatch(body); g == nil || g[1] != "2" {
			t.Errorf("/metrics: %s's Nebula tunnels %v, want 2", pod, g)
		}
	}
	series := regexp.MustCompile(`(?m)^nebula_\w+`).FindAllString(body, -1)
	t.Logf("%d Nebula series, e.g. %v", len(series), series[:min(3, len(series))])
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
