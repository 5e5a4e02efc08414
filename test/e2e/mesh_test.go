package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sealmesh/sealmesh/internal/testenv"
	"github.com/sealmesh/sealmesh/test/mesh"
	"github.com/sealmesh/sealmesh/test/netlab"
)

func up(t *testing.T, opts ...func(*mesh.Options)) *mesh.Mesh {
	t.Helper()
	testenv.RequireRoot(t)
	ctx := context.Background()
	work := t.TempDir()
	prefix := fmt.Sprintf("sme2e%d", os.Getpid()%100000)
	o := mesh.Options{BinDir: binDir, WorkDir: work, Prefix: prefix, Say: t.Logf}
	for _, f := range opts {
		f(&o)
	}
	m, err := mesh.Up(ctx, o)
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		// Nothing of the lab may outlive it.
		for _, n := range []string{"coordinator", "lighthouse", "node", "pod-a", "pod-b"} {
			if _, err := os.Stat("/run/netns/" + prefix + "-" + n); err == nil {
				t.Errorf("netns %s-%s left behind", prefix, n)
			}
		}
		if t.Failed() {
			for _, f := range []string{"coordinator.log", "lighthouse.log", "agent.log", "sealmesh-cni.log"} {
				t.Logf("--- %s\n%s", f, m.Tail(f))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMeshOnOneMachine is the whole path: two pods get their network from a real
// conflist (bridge + host-local, then sealmesh-cni), each enrolled with simulated
// SNP evidence, and talk over Nebula; their traffic is encrypted on the underlay.
func TestMeshOnOneMachine(t *testing.T) {
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
	t.Logf("pod-a underlay %s overlay %s; pod-b underlay %s overlay %s", a.UnderlyIP, a.OverlayIP, b.UnderlyIP, b.OverlayIP)
	if !netip.MustParsePrefix(mesh.Overlay).Contains(a.OverlayIP) || a.OverlayIP == b.OverlayIP {
		t.Fatalf("overlay IPs %s, %s: want two distinct addresses in %s", a.OverlayIP, b.OverlayIP, mesh.Overlay)
	}
	for _, p := range []*mesh.Pod{a, b} {
		if err := m.CheckSealmesh(ctx, p); err != nil {
			t.Errorf("CNI CHECK %s: %v", p.Name, err)
		}
	}

	t.Run("ping over nebula", func(t *testing.T) {
		// The first echo may wait for the handshake through the lighthouse.
		res, err := a.NS.Ping(b.OverlayIP, 5, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pod-a → pod-b %s: %s", b.OverlayIP, res)
		if res.Received != res.Sent {
			t.Fatalf("ping pod-a → pod-b over nebula: %s", res)
		}
	})

	t.Run("ping over nebula, IPv6", func(t *testing.T) {
		res, err := a.NS.Ping(b.OverlayIP6, 3, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pod-a → pod-b %s: %s", b.OverlayIP6, res)
		if res.Received != res.Sent {
			t.Fatalf("ping6 pod-a → pod-b over nebula: %s", res)
		}
	})

	t.Run("encrypted on the underlay", func(t *testing.T) {
		marker := make([]byte, 16)
		rand.Read(marker)
		payload := []byte("sealmesh-marker-" + hex.EncodeToString(marker))

		listener, err := b.NS.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), 9999))
		if err != nil {
			t.Fatal(err)
		}
		defer listener.Close()
		// The pods' underlay links: node-side veth ports of the bridge.
		onBridge, err := m.Node.Capture(b.HostVeth)
		if err != nil {
			t.Fatal(err)
		}
		onNebula, err := b.NS.Capture(mesh.NebulaIf)
		if err != nil {
			onBridge.Stop()
			t.Fatal(err)
		}
		const sent = 5
		for i := 0; i < sent; i++ {
			if err := a.NS.SendUDP(netip.AddrPortFrom(b.OverlayIP, 9999), payload); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		buf := make([]byte, 2048)
		listener.SetReadDeadline(time.Now().Add(5 * time.Second))
		for got < sent {
			n, err := listener.Read(buf)
			if err != nil {
				break
			}
			if string(buf[:n]) == string(payload) {
				got++
			}
		}
		// Control: the same marker sent on the underlay, outside Nebula, must
		// show on the underlay, or the capture proves nothing. (To the port pod-b
		// listens on: an ICMP port-unreachable would quote it a second time.)
		if err := a.NS.SendUDP(netip.AddrPortFrom(b.UnderlyIP, 9999), payload); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		bridgeFrames, nebulaFrames := onBridge.Stop(), onNebula.Stop()

		if got != sent {
			t.Errorf("pod-b received the marker %d times over nebula, want %d", got, sent)
		}
		inClear := netlab.Count(bridgeFrames, payload)
		if inClear != 1 {
			t.Errorf("marker seen %d times on pod-b's underlay link, want exactly once (the clear-text control), never from the %d sent over nebula", inClear, sent)
		}
		if len(bridgeFrames) < sent+1 {
			t.Errorf("underlay capture saw only %d frames: the encrypted packets did not cross it", len(bridgeFrames))
		}
		if n := netlab.Count(nebulaFrames, payload); n < sent {
			t.Errorf("marker seen %d times on pod-b's %s, want %d (it crosses the nebula interface in clear)", n, mesh.NebulaIf, sent)
		}
	})

	t.Run("status", func(t *testing.T) {
		s, err := m.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.State != "ready" || !s.AcceptsSimulated {
			t.Errorf("state %s acceptsSimulated %v", s.State, s.AcceptsSimulated)
		}
		hosts := map[string]string{}
		for _, h := range s.Hosts {
			hosts[h.IP] = h.Role + " " + h.Name + " " + strings.Join(h.Groups, ",") + " " + h.Workload
			if time.Until(h.NotAfter) <= 0 || time.Until(h.NotAfter) > time.Hour+time.Minute {
				t.Errorf("%s expires %s, want within the manifest's 1h", h.Name, h.NotAfter)
			}
		}
		want := map[string]string{
			mesh.LighthouseVPN:   "lighthouse lighthouse-1 lighthouse ",
			a.OverlayIP.String(): "pod pod-a.demo pods demo/pod-a",
			b.OverlayIP.String(): "pod pod-b.demo pods demo/pod-b",
		}
		if fmt.Sprint(hosts) != fmt.Sprint(want) {
			t.Errorf("status hosts\n got %v\nwant %v", hosts, want)
		}
		out, err := m.Meshctl("status", "--owner-key", m.OwnerKey())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("meshctl status:\n%s", out)
		if !strings.Contains(out, "SIMULATED") || !strings.Contains(out, a.OverlayIP.String()) {
			t.Errorf("meshctl status output lacks the simulated warning or pod-a:\n%s", out)
		}
		// Without an owner key: the count, not the hosts.
		if out, err := m.Meshctl("status"); err != nil || strings.Contains(out, a.OverlayIP.String()) || !strings.Contains(out, "hosts:       3 (listed to owners") {
			t.Errorf("meshctl status without --key: %v\n%s", err, out)
		}
		got, err := m.Meshctl("manifest", "get")
		if err != nil || !strings.Contains(got, "\nnetworks:\n") || !strings.Contains(got, mesh.Overlay6) { // YAML, as an owner writes it
			t.Errorf("meshctl manifest get: %v\n%s", err, got)
		}
		hist, err := m.Meshctl("manifest", "history")
		if err != nil || !strings.Contains(hist, "generation 1") || !strings.Contains(hist, "signed by owner") {
			t.Errorf("meshctl manifest history: %v\n%s", err, hist)
		}
	})

	t.Run("clients verify the coordinator", func(t *testing.T) {
		// A policy naming another coordinator image: the real coordinator's
		// evidence does not satisfy it, so meshctl refuses to talk to it.
		var p map[string]map[string]any
		b, err := os.ReadFile(m.Path("coordinator-policy.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		p["simulated"]["measurements"] = []string{strings.Repeat("ab", 48)}
		b, _ = json.Marshal(p)
		other := m.Path("other-policy.json")
		if err := os.WriteFile(other, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = m.MeshctlWithPolicy(other, "status")
		if err == nil || !strings.Contains(err.Error(), "not as the policy requires") {
			t.Fatalf("meshctl with another coordinator's policy: %v", err)
		}
	})

	t.Run("del", func(t *testing.T) {
		if err := m.DelPod(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := m.DelPod(ctx, b); err != nil {
			t.Fatalf("second DEL: %v", err)
		}
		delete(m.Pods, "pod-b")
		if err := m.CheckSealmesh(ctx, b); err == nil {
			t.Error("CHECK after DEL succeeded")
		}
		s, err := m.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range s.Hosts {
			if h.IP == b.OverlayIP.String() {
				t.Errorf("pod-b's lease %s survived DEL", h.IP)
			}
		}
		res, _ := a.NS.Ping(b.OverlayIP, 1, time.Second)
		if res.Received != 0 {
			t.Error("pod-b still answers on its overlay IP after DEL")
		}
	})
}

// TestCNIVersions runs the chain at every cniVersion sealmesh-cni supports, as the
// reference plugins' tests do: ADD returns a result of that version carrying the
// Nebula interface and address, the pod is reachable over Nebula, CHECK and DEL
// work.
func TestCNIVersions(t *testing.T) {
	m := up(t)
	ctx := context.Background()
	first, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	supported, err := m.PluginVersions(ctx)
	if err != nil {
		t.Fatalf("CNI VERSION: %v", err)
	}
	if got := strings.Join(supported, " "); got != "0.4.0 1.0.0 1.1.0" {
		t.Errorf("CNI VERSION lists %q, want 0.4.0 1.0.0 1.1.0", got)
	}
	for i, v := range supported {
		t.Run(v, func(t *testing.T) {
			if err := m.UseCNIVersion(v); err != nil {
				t.Fatal(err)
			}
			p, err := m.AddPod(ctx, fmt.Sprintf("pod-v%d", i))
			if err != nil {
				t.Fatal(err)
			}
			last := p.Result.Interfaces[len(p.Result.Interfaces)-1]
			if last.Name != mesh.NebulaIf || last.Sandbox != p.NS.Path {
				t.Errorf("last interface = %+v, want %s in %s", last, mesh.NebulaIf, p.NS.Path)
			}
			if err := m.CheckSealmesh(ctx, p); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if res, err := p.NS.Ping(first.OverlayIP, 3, 5*time.Second); err != nil || res.Received == 0 {
				t.Errorf("ping %s over nebula: %v %v", first.OverlayIP, res, err)
			}
			if err := m.DelPod(ctx, p); err != nil {
				t.Errorf("DEL: %v", err)
			}
			delete(m.Pods, p.Name)
		})
	}
}

// TestCNIStatusAndGC drives CNI 1.1's STATUS and GC through libcni on the real
// conflist: GC removes the attachment the runtime no longer lists (its Nebula
// interface gone, its address released) and keeps the other; STATUS is ready
// while the agent serves, coordinator or not, and error 50 without it.
func TestCNIStatusAndGC(t *testing.T) {
	m := up(t)
	ctx := context.Background()
	if err := m.UseCNIVersion("1.1.0"); err != nil {
		t.Fatal(err)
	}
	if err := m.CNIStatus(ctx); err != nil {
		t.Fatalf("STATUS with the coordinator up: %v", err)
	}
	a, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.AddPod(ctx, "pod-b")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.GC(ctx, a); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if err := m.CheckSealmesh(ctx, a); err != nil {
		t.Errorf("the kept pod after GC: %v", err)
	}
	if err := b.NS.Do(func() error {
		_, err := netlink.LinkByName(mesh.NebulaIf)
		return err
	}); err == nil {
		t.Errorf("pod-b's %s still exists after GC", mesh.NebulaIf)
	}
	s, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range s.Hosts {
		if h.IP == b.OverlayIP.String() {
			t.Errorf("pod-b's address %s is still leased after GC", h.IP)
		}
	}

	// DEL succeeds when the pod's netns is already gone (a runtime that lost
	// it), and cleans up the attachment.
	if err := netns.DeleteNamed(filepath.Base(a.NS.Path)); err != nil {
		t.Fatal(err)
	}
	if err := m.DelPod(ctx, a); err != nil {
		t.Fatalf("DEL with the netns gone: %v", err)
	}
	delete(m.Pods, a.Name)
	if s, err := m.Status(ctx); err == nil {
		for _, h := range s.Hosts {
			if h.IP == a.OverlayIP.String() {
				t.Errorf("pod-a's address %s still leased after DEL without its netns", h.IP)
			}
		}
	}

	// With no coordinator, STATUS stays ready (each ADD fails instead: a
	// node-wide "not ready" would hold back the coordinators' own pods);
	// with no agent, it is error 50.
	m.StopCoordinator()
	if err := m.CNIStatus(ctx); err != nil {
		t.Fatalf("STATUS with the coordinator down: %v, want ready (bootstrap)", err)
	}
	m.KillAgent()
	var e *types.Error
	if err := m.CNIStatus(ctx); !errors.As(err, &e) || e.Code != types.ErrPluginNotAvailable {
		t.Fatalf("STATUS with no agent: %v, want error %d", err, types.ErrPluginNotAvailable)
	}
}

// TestCNIChains runs sealmesh-cni through libcni in other chains, at every
// cniVersion: after ptp, and before portmap (nftables) and tuning, whose input
// is sealmesh-cni's result. The pods reach a bridge pod over Nebula; portmap's
// host port reaches the pod; tuning's setting is on the pod's eth0.
func TestCNIChains(t *testing.T) {
	m := up(t)
	ctx := context.Background()
	first, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := m.PluginVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, chain := range []string{mesh.ChainPTP, mesh.ChainBridgeThenMeta} {
		for _, v := range versions {
			n++
			t.Run(chain+"/"+v, func(t *testing.T) {
				if err := m.UseCNIVersion(v); err != nil {
					t.Fatal(err)
				}
				if err := m.UseChain(chain); err != nil {
					t.Fatal(err)
				}
				p, err := m.AddPod(ctx, fmt.Sprintf("pod-c%d", n))
				if err != nil {
					t.Fatal(err)
				}
				if err := m.CheckSealmesh(ctx, p); err != nil {
					t.Errorf("CHECK: %v", err)
				}
				if res, err := p.NS.Ping(first.OverlayIP, 3, 5*time.Second); err != nil || res.Received == 0 {
					t.Errorf("ping %s over nebula: %v %v", first.OverlayIP, res, err)
				}
				if chain == mesh.ChainBridgeThenMeta {
					checkMeta(t, m, p)
				}
				if err := m.DelPod(ctx, p); err != nil {
					t.Errorf("DEL: %v", err)
				}
				delete(m.Pods, p.Name)
			})
		}
	}
}

// checkMeta: tuning made the pod's eth0 promiscuous, and portmap's host port
// on the node reaches a listener in the pod.
func checkMeta(t *testing.T, m *mesh.Mesh, p *mesh.Pod) {
	t.Helper()
	if err := p.NS.Do(func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if l.Attrs().Promisc != 1 {
			return fmt.Errorf("eth0 not promiscuous (tuning)")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	var ln net.Listener
	if err := p.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", mesh.PortmapPod))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("pod"))
			c.Close()
		}
	}()
	var got []byte
	err := m.Node.Do(func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", mesh.NodeIP, mesh.PortmapHost), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	if err != nil || string(got) != "pod" {
		t.Errorf("host port %d → pod port %d (portmap): %q %v", mesh.PortmapHost, mesh.PortmapPod, got, err)
	}
}
