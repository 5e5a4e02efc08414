package e2e

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/test/mesh"
	"github.com/sealmesh/sealmesh/test/netlab"
)

// nft loads an nftables ruleset in ns.
func nft(t *testing.T, ns *netlab.NS, rules string) {
	t.Helper()
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	var out []byte
	if err := ns.Do(func() (err error) { out, err = cmd.CombinedOutput(); return err }); err != nil {
		t.Fatalf("nft in %s: %v\n%s\n%s", ns.Name, err, out, rules)
	}
}

// counter reads a named nftables counter's packets in ns.
func counter(t *testing.T, ns *netlab.NS, table, name string) int {
	t.Helper()
	cmd := exec.Command("nft", "list", "counter", "inet", table, name)
	var out []byte
	if err := ns.Do(func() (err error) { out, err = cmd.CombinedOutput(); return err }); err != nil {
		t.Fatalf("nft list counter %s: %v\n%s", name, err, out)
	}
	m := regexp.MustCompile(`packets (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no packet count in %s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// behindNAT makes a host namespace on 192.168.<i>.2 behind a router
// namespace that masquerades it as 10.99.<2+i>.2, routed through the node.
func behindNAT(t *testing.T, m *mesh.Mesh, i int) *netlab.NS {
	t.Helper()
	router, err := m.Lab.NS(fmt.Sprintf("nat%d", i))
	if err != nil {
		t.Fatal(err)
	}
	host, err := m.Lab.NS(fmt.Sprintf("vm%d", i))
	if err != nil {
		t.Fatal(err)
	}
	wan := fmt.Sprintf("10.99.%d", 2+i)
	lan := fmt.Sprintf("192.168.%d", i)
	for _, err := range []error{
		netlab.Veth(m.Node, fmt.Sprintf("smn%d", i), wan+".1/24", router, "wan0", wan+".2/24"),
		netlab.Veth(router, "lan0", lan+".1/24", host, "eth0", lan+".2/24"),
		router.DefaultRoute(wan + ".1"), router.Forward(), host.DefaultRoute(lan + ".1"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	nft(t, router, `table ip nat {
	chain post { type nat hook postrouting priority srcnat; oifname "wan0" masquerade; }
}`)
	return host
}

// TestNATAndRelay: two stock-nebula hosts behind two masquerading routers
// reach each other over Nebula, directly (the lighthouse tells each where
// the other's NAT maps it, and both punch); with the direct path between
// the NATs dropped, through the lighthouse as relay: its counters show
// every ping passing it both ways.
func TestNATAndRelay(t *testing.T) {
	m := up(t)
	a := joinVM(t, m, behindNAT(t, m, 1), "vm-a")
	b := joinVM(t, m, behindNAT(t, m, 2), "vm-b")

	// The node routes between the NATs: count what passes directly.
	nft(t, m.Node, `table inet smtest {
	counter direct {}
	chain count_forward {
		type filter hook forward priority filter;
		ip saddr 10.99.3.2 ip daddr 10.99.4.2 udp dport 1-65535 counter name direct
		ip saddr 10.99.4.2 ip daddr 10.99.3.2 udp dport 1-65535 counter name direct
	}
}`)
	// The lighthouse counts the UDP it gets from each NAT.
	nft(t, m.LH, `table inet smtest {
	counter from_a {}
	counter from_b {}
	chain count_input {
		type filter hook input priority filter;
		ip saddr 10.99.3.2 udp dport 4242 counter name from_a
		ip saddr 10.99.4.2 udp dport 4242 counter name from_b
	}
}`)
	reach(t, "vm-a reaches vm-b through both NATs", a.ns, b.ip)
	if r, err := a.ns.Ping(b.ip, 5, 5*time.Second); err != nil || r.Received == 0 {
		t.Fatalf("vm-a → vm-b: %v %v", r, err)
	}
	if n := counter(t, m.Node, "smtest", "direct"); n == 0 {
		t.Fatal("no packet went directly between the NATs: hole punching did not happen")
	}

	// Punching blocked: nothing passes directly; both start again (new
	// tunnels) and meet through the relay.
	nft(t, m.Node, `table inet smblock {
	counter dropped {}
	chain drop_direct {
		type filter hook forward priority filter - 1;
		ip saddr 10.99.3.2 ip daddr 10.99.4.2 counter name dropped drop
		ip saddr 10.99.4.2 ip daddr 10.99.3.2 counter name dropped drop
	}
}`)
	for _, h := range []*vmHost{a, b} {
		netlab.Stop(h.cmd, 5*time.Second)
		h.start(t, m)
	}
	reach(t, "vm-a reaches vm-b through the relay", a.ns, b.ip)
	beforeA, beforeB := counter(t, m.LH, "smtest", "from_a"), counter(t, m.LH, "smtest", "from_b")
	const pings = 20
	r, err := a.ns.Ping(b.ip, pings, 10*time.Second)
	if err != nil || r.Received < pings-2 {
		t.Fatalf("vm-a → vm-b through the relay: %v %v", r, err)
	}
	fromA, fromB := counter(t, m.LH, "smtest", "from_a")-beforeA, counter(t, m.LH, "smtest", "from_b")-beforeB
	dropped := counter(t, m.Node, "smblock", "dropped")
	t.Logf("%d pings answered; the relay got %d packets from vm-a's NAT and %d from vm-b's; %d direct packets dropped", r.Received, fromA, fromB, dropped)
	if dropped == 0 {
		t.Fatal("no direct packet was tried between the NATs: the relay was not what the hosts fell back to")
	}
	if fromA < r.Received || fromB < r.Received {
		t.Fatalf("the lighthouse got %d and %d packets for %d echoes each way: the pings did not pass the relay", fromA, fromB, r.Received)
	}
}
