package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/test/mesh"
)

// TestRenewalKeepsStreams: with 15 s certificates, the agent renews each pod's
// certificate every 10 s with fresh evidence; a TCP stream between two pods
// runs across several renewals without a break.
func TestRenewalKeepsStreams(t *testing.T) {
	m := up(t, func(o *mesh.Options) { o.Lifetime = "15s" })
	ctx := context.Background()
	a, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.AddPod(ctx, "pod-b")
	if err != nil {
		t.Fatal(err)
	}
	first, err := m.AgentRecord(a)
	if err != nil {
		t.Fatal(err)
	}

	// pod-b echoes lines; pod-a sends one every 50 ms for 35 s and reads it back.
	st := openStream(t, b.NS, b.OverlayIP, a.NS)
	st.keep(t, 35*time.Second)
	sent := st.sent
	agentLog, _ := os.ReadFile(m.Path("agent.log"))
	renewals := strings.Count(string(agentLog), "certificate renewed")
	t.Logf("%d lines over the stream; %d renewals", sent, renewals)
	if renewals < 4 { // two pods, about three renewals each in 35 s
		t.Fatalf("%d renewals in 35 s of 15 s certificates; want at least 4\n%s", renewals, m.Tail("agent.log"))
	}
	// The lighthouse renews too: a pod that joins now still finds the others
	// through it.
	lhLog, _ := os.ReadFile(m.Path("lighthouse.log"))
	if n := strings.Count(string(lhLog), "certificate renewed"); n < 2 {
		t.Errorf("the lighthouse renewed %d times in 35 s of 15 s certificates", n)
	}
	c, err := m.AddPod(ctx, "pod-c")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.NS.Ping(a.OverlayIP, 5, 10*time.Second); err != nil || r.Received == 0 {
		t.Errorf("a pod that joined after several renewals cannot reach pod-a through the lighthouse: %v %v", r, err)
	}

	last, err := m.AgentRecord(a)
	if err != nil {
		t.Fatal(err)
	}
	if last["fingerprint"] == first["fingerprint"] || last["result"].(map[string]any)["address"] != first["result"].(map[string]any)["address"] {
		t.Fatalf("pod-a's certificate %v → %v, address %v → %v: want a new certificate, the same address",
			first["fingerprint"], last["fingerprint"], first["result"], last["result"])
	}
}
