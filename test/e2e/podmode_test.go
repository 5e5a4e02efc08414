package e2e

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sealmesh/sealmesh/test/mesh"
	"github.com/sealmesh/sealmesh/test/netlab"
)

// TestPodMode: the agent runs inside a pod as a sidecar (no CNI): it attests
// with the pod's own TEE, brings Nebula up in the pod's own namespace, talks
// to a CNI-attached pod over it, and gives its address back when it stops.
func TestPodMode(t *testing.T) {
	m := up(t)
	ctx := context.Background()
	a, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	// A pod with plain networking of its own: a veth to the node.
	self, err := m.Lab.NS("pod-self")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlab.Veth(m.Node, "smp0", "10.246.0.1/24", self, "eth0", "10.246.0.2/24"); err != nil {
		t.Fatal(err)
	}
	if err := self.DefaultRoute("10.246.0.1"); err != nil {
		t.Fatal(err)
	}
	agent, err := m.Lab.Start(self, m.Path("pod-agent.log"), m.Bin("sealmesh-agent"), "pod",
		"--coordinator", m.CoordinatorURL(), "--coordinator-policy-file", m.Path("coordinator-policy.json"),
		"--tee", "simulated:"+m.Path("sim-tee"), "--state-dir", m.Path("pod-agent-state"),
		"--health-listen", "127.0.0.1:7083", "--pod-namespace", "demo", "--pod-name", "pod-self")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitHTTP(ctx, self, "http://127.0.0.1:7083/readyz"); err != nil {
		t.Fatalf("pod-mode agent not ready: %v\n%s", err, m.Tail("pod-agent.log"))
	}
	var overlay netip.Addr
	if err := self.Do(func() error {
		l, err := netlink.LinkByName(mesh.NebulaIf)
		if err != nil {
			return err
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil || len(addrs) == 0 {
			return err
		}
		overlay, _ = netip.AddrFromSlice(addrs[0].IP.To4())
		return nil
	}); err != nil || !overlay.IsValid() {
		t.Fatalf("no %s with an overlay address in the pod: %v", mesh.NebulaIf, err)
	}
	t.Logf("pod-self has %s on %s", overlay, mesh.NebulaIf)
	if r, err := a.NS.Ping(overlay, 5, 10*time.Second); err != nil || r.Received == 0 {
		t.Fatalf("pod-a → pod-self over nebula: %v %v", r, err)
	}
	if r, err := self.Ping(a.OverlayIP, 3, 5*time.Second); err != nil || r.Received == 0 {
		t.Fatalf("pod-self → pod-a over nebula: %v %v", r, err)
	}

	// The pod stops: the agent gives its address back.
	netlab.Stop(agent, 10*time.Second)
	s, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Hosts {
		if h.IP == overlay.String() {
			t.Errorf("pod-self's address %s still leased after the pod stopped", h.IP)
		}
	}
	if err := self.Do(func() error { _, err := net.InterfaceByName(mesh.NebulaIf); return err }); err == nil {
		t.Errorf("%s still in the pod after its agent stopped", mesh.NebulaIf)
	}
}
