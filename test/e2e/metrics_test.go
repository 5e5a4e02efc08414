package e2e

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestAgentMetrics: the agent's /metrics carries its own figures and each
// pod's Nebula metrics, labelled with the pod, through its one listener.
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
	for _, pod := range []string{"pod-a", "pod-b"} {
		re := regexp.MustCompile(`(?m)^nebula_\w+\{[^}]*pod_name="` + pod + `"`)
		if !re.MatchString(body) {
			t.Errorf("/metrics has no Nebula metric of %s", pod)
		}
	}
	series := regexp.MustCompile(`(?m)^nebula_\w+`).FindAllString(body, -1)
	t.Logf("%d Nebula series, e.g. %v", len(series), series[:min(3, len(series))])
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
