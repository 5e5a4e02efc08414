package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/test/tools"
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
		re := regexp.MustCompile(`(?m)^sealmesh_agent_pod_nebula_tunnels\{[^}]*pod="` + pod + `"[^}]*\} ([0-9]+)`)
		if g := re.FindStringSubmatch(body); g == nil || g[1] != "2" {
			t.Errorf("/metrics: %s's Nebula tunnels %v, want 2", pod, g)
		}
		// Its certificate's end, labelled as kube-state-metrics labels pods.
		re = regexp.MustCompile(`(?m)^sealmesh_agent_pod_certificate_expiry_timestamp_seconds\{container_id="[^"]+",namespace="[^"]*",pod="` + pod + `"\} ([0-9.e+]+)`)
		if g := re.FindStringSubmatch(body); g == nil {
			t.Errorf("/metrics: no certificate expiry for %s", pod)
		} else if end, _ := strconv.ParseFloat(g[1], 64); end < float64(time.Now().Unix()) || end > float64(time.Now().Add(2*time.Hour).Unix()) {
			t.Errorf("/metrics: %s's certificate expires at %v, want within the hour's lifetime", pod, g[1])
		}
	}
	if !regexp.MustCompile(`(?m)^sealmesh_build_info\{[^}]*component="agent"[^}]*nebula_version="v1\.11\.1"[^}]*\} 1`).MatchString(body) {
		t.Error("/metrics has no sealmesh_build_info naming Nebula v1.11.1")
	}
	series := regexp.MustCompile(`(?m)^nebula_\w+`).FindAllString(body, -1)
	t.Logf("%d Nebula series, e.g. %v", len(series), series[:min(3, len(series))])
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// TestAlertsAndDashboard: the chart's alerting rules pass promtool, and every
// sealmesh metric the rules and the Grafana dashboard name is served by a
// running coordinator, agent or lighthouse (a renamed metric would leave an
// alert that never fires).
func TestAlertsAndDashboard(t *testing.T) {
	rules := filepath.Join(tools.Root(), "deploy", "helm", "sealmesh", "files", "alerts.yaml")
	dashboard := filepath.Join(tools.Root(), "deploy", "helm", "sealmesh", "files", "dashboard.json")
	if out, err := exec.Command(tools.Bin(t, "promtool"), "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	m := up(t)
	if _, err := m.AddPod(context.Background(), "pod-a"); err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, c := range []string{"agent", "coordinator", "lighthouse"} {
		body, err := m.Metrics(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range regexp.MustCompile(`(?m)^(sealmesh_\w+)`).FindAllStringSubmatch(body, -1) {
			served[n[1]] = true
		}
	}
	var named []string
	for _, f := range []string{rules, dashboard} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range regexp.MustCompile(`sealmesh_\w+`).FindAllString(string(b), -1) {
			named = append(named, n)
			if !served[n] {
				t.Errorf("%s names %s, which no sealmesh binary serves", filepath.Base(f), n)
			}
		}
	}
	if len(named) < 10 {
		t.Fatalf("only %d metric names found in the rules and dashboard: %v", len(named), named)
	}
}
