package e2e

import (
	"context"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/test/mesh"
)

// TestAgentRestart: kill -9 of the node agent does not cut pods off (their
// tunnels keep running); the next agent re-adopts a running tunnel, restores
// one that stopped meanwhile (enrolled again); a killed tunnel process has all
// its pods restored; a DEL after the restart still cleans up.
func TestAgentRestart(t *testing.T) {
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
	ping := func(from *mesh.Pod, to netip.Addr) {
		t.Helper()
		if r, err := from.NS.Ping(to, 3, 5*time.Second); err != nil || r.Received == 0 {
			t.Fatalf("ping %s → %s over nebula: %v %v", from.Name, to, r, err)
		}
	}
	ping(a, b.OverlayIP)
	overlay := func(p *mesh.Pod) netip.Addr {
		rec, err := m.AgentRecord(p)
		if err != nil {
			t.Fatal(err)
		}
		return netip.MustParsePrefix(rec["result"].(map[string]any)["address"].(string)).Addr()
	}

	m.KillAgent()
	ping(a, b.OverlayIP) // no agent, pods still talk

	// pod-b's Nebula stops too while no agent watches (its tunnel process,
	// shared with pod-a, keeps running).
	tb, err := m.Tunnel(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := tunnel.RemoveInstance(ctx, tb.Control, tb.Instance); err != nil {
		t.Fatal(err)
	}

	if err := m.RestartAgent(ctx, "agent-2.log"); err != nil {
		t.Fatal(err)
	}
	log := m.Tail("agent-2.log")
	if !strings.Contains(log, "pod re-adopted") || !strings.Contains(log, "pod restored") {
		t.Fatalf("the restarted agent neither re-adopted pod-a nor restored pod-b:\n%s", log)
	}
	for _, p := range []*mesh.Pod{a, b} {
		if err := m.CheckSealmesh(ctx, p); err != nil {
			t.Errorf("CHECK %s after the restart: %v", p.Name, err)
		}
	}
	b.OverlayIP = overlay(b)
	ping(a, b.OverlayIP)

	// A tunnel process killed while the agent runs: every pod in it is
	// restored, in a new one.
	ta, err := m.Tunnel(a)
	if err != nil {
		t.Fatal(err)
	}
	if tb, err = m.Tunnel(b); err != nil || tb.ID != ta.ID {
		t.Fatalf("pod-a and pod-b should share a tunnel process: %+v %+v %v", ta, tb, err)
	}
	syscall.Kill(ta.PID, syscall.SIGKILL)
	restored := func(p *mesh.Pod) bool {
		now, err := m.Tunnel(p)
		return err == nil && now.ID != ta.ID
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !(restored(a) && restored(b)); time.Sleep(200 * time.Millisecond) {
	}
	if !restored(a) || !restored(b) {
		t.Fatalf("the pods' tunnels were not restored after their process died:\n%s", m.Tail("agent-2.log"))
	}
	aIP := overlay(a)
	b.OverlayIP = overlay(b)
	ping(a, b.OverlayIP)
	if r, err := b.NS.Ping(aIP, 5, 10*time.Second); err != nil || r.Received == 0 {
		t.Fatalf("pod-b → restored pod-a %s: %v %v", aIP, r, err)
	}
	a.OverlayIP = aIP

	// DEL after the restart: the adopted tunnel stops, its record and lease go.
	if err := m.DelPod(ctx, a); err != nil {
		t.Fatal(err)
	}
	delete(m.Pods, a.Name)
	if err := a.NS.Do(func() error { _, err := netlink.LinkByName(mesh.NebulaIf); return err }); err == nil {
		t.Errorf("pod-a's %s still exists after DEL", mesh.NebulaIf)
	}
	if _, err := m.AgentRecord(a); err == nil {
		t.Error("pod-a's record outlived its DEL")
	}
	s, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Hosts {
		if h.IP == a.OverlayIP.String() {
			t.Errorf("pod-a's address %s still leased after DEL", h.IP)
		}
	}
}
