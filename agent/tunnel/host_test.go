package tunnel

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/slackhq/nebula"
	"github.com/slackhq/nebula/config"
	"github.com/slackhq/nebula/overlay"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/issuer"
	"github.com/sealmesh/sealmesh/internal/testenv"
	"github.com/sealmesh/sealmesh/test/netlab"
	"github.com/sealmesh/sealmesh/test/tools"
)

// hostEnv, when set, makes this test binary a tunnel process serving on that
// socket (what sealmesh-tunnel does), so the tests run a real one in a
// namespace of their choosing.
const hostEnv = "SEALMESH_TEST_TUNNEL_HOST"

func TestMain(m *testing.M) {
	if control := os.Getenv(hostEnv); control != "" {
		if os.Getenv(churnEnv) != "" {
			go churnDescriptors()
		}
		log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		err := Serve(ctx, log, control, "test", func() { fmt.Println(ReadyLine) })
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// churnEnv, when set with hostEnv, makes the tunnel process open and close
// descriptors all the time, as a busy one does (control connections, the
// netlink sockets of other pods' instances), only faster.
const churnEnv = "SEALMESH_TEST_TUNNEL_CHURN"

// churnDescriptors takes every descriptor number that comes free, for a
// moment: eventfds, which poll(2) waits on for good when nobody writes them.
func churnDescriptors() {
	for {
		var fds []int
		for range 16 {
			if fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC); err == nil {
				fds = append(fds, fd)
			}
		}
		time.Sleep(100 * time.Microsecond)
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
}

// newLab is a network lab whose namespaces carry prefix and the test's PID,
// closed when the test ends.
func newLab(t *testing.T, prefix string) *netlab.Lab {
	lab := netlab.New(fmt.Sprintf("%s%d", prefix, os.Getpid()%100000))
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return lab
}

// TestHostInstancesStayInTheirNamespaces runs two pods' Nebula instances in one
// tunnel process started from a "node" namespace with an address of its own
// (198.51.100.7), and a lighthouse in a third namespace. The process must run
// in a namespace of its own holding only lo; each instance's interface and
// UDP socket must be in its pod's namespace and nowhere else; the lighthouse
// must learn only the pods' underlay addresses, never the node's (Nebula
// lists interfaces by namespace, from whatever thread its update worker runs
// on); the pods talk over Nebula; a reload works; removing instances leaves
// the process's descriptors as they were.
func TestHostInstancesStayInTheirNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := context.Background()
	lab := newLab(t, "smth")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	node, err := lab.NS("node")
	must(err)
	lhNS, err := lab.NS("lh")
	must(err)
	p1, err := lab.NS("p1")
	must(err)
	p2, err := lab.NS("p2")
	must(err)
	const nodeAddr = "198.51.100.7"
	// The node's own link (this kernel has no dummy interfaces).
	must(netlab.Veth(node, "up0", nodeAddr+"/24", lhNS, "node0", "198.51.100.1/24"))
	must(netlab.Veth(lhNS, "p1", "10.201.1.1/24", p1, "eth0", "10.201.1.2/24"))
	must(netlab.Veth(lhNS, "p2", "10.201.2.1/24", p2, "eth0", "10.201.2.2/24"))
	must(lhNS.Forward())
	must(p1.DefaultRoute("10.201.1.1"))
	must(p2.DefaultRoute("10.201.2.1"))

	// A CA and three hosts.
	_, caKey, _ := ed25519.GenerateKey(rand.Reader)
	overlayNet := netip.MustParsePrefix("10.42.0.0/24")
	ca, err := issuer.NewCA(caKey, "test", []netip.Prefix{overlayNet}, time.Hour, time.Now())
	must(err)
	enrolment := func(name, ip string) (*api.EnrolResponse, []byte) {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		must(err)
		c, err := ca.Sign(issuer.Host{Name: name, Networks: []netip.Prefix{netip.MustParsePrefix(ip + "/24")},
			Groups: []string{"pods"}, PublicKey: k.PublicKey().Bytes(), NotAfter: time.Now().Add(time.Hour)}, time.Now())
		must(err)
		pem, err := c.MarshalPEM()
		must(err)
		return &api.EnrolResponse{Name: name, IP: ip + "/24", CA: string(ca.PEM()), Certificate: string(pem),
			Lighthouses: []api.Lighthouse{{OverlayIP: "10.42.0.1", Underlay: "10.201.1.1:4242"}},
			Inbound:     []api.FirewallRule{{Proto: "any", Port: "any"}}}, k.Bytes()
	}

	// The lighthouse: Nebula in this test process, its socket in lhNS.
	lhResp, lhKey := enrolment("lighthouse", "10.42.0.1")
	lhCfg, err := nebulaconfig.Config(lhResp, lhKey, nebulaconfig.Options{Lighthouse: true}).Render()
	must(err)
	lhLog := slog.New(slog.NewJSONHandler(&tools.SyncBuffer{}, nil))
	lc := config.NewC(lhLog)
	must(lc.LoadString(string(lhCfg)))
	var lh *nebula.Control
	must(lhNS.Do(func() error {
		var err error
		if lh, err = nebula.Main(lc, false, "test", lhLog, overlay.NewDeviceFromConfig); err != nil {
			return err
		}
		return lh.Start()
	}))
	t.Cleanup(lh.Stop)

	// The tunnel process, started from the node's namespace as the agent
	// starts it.
	dir := t.TempDir()
	control := dir + "/host.sock"
	t.Setenv(hostEnv, control)
	hostLog := &tools.SyncBuffer{}
	var proc *Process
	must(node.Do(func() error {
		var err error
		proc, err = Start(os.Args[0], []string{"-test.run=^$"}, hostLog, 20*time.Second)
		return err
	}))
	t.Cleanup(func() { proc.Stop(5 * time.Second) })
	// It runs in a namespace of its own, with only a loopback device in it.
	own := fmt.Sprintf("/proc/%d/ns/net", proc.Pid())
	ownInfo, err := os.Stat(own)
	must(err)
	for _, other := range []string{node.Path, "/proc/self/ns/net"} {
		info, err := os.Stat(other)
		must(err)
		if os.SameFile(ownInfo, info) {
			t.Fatalf("the tunnel process runs in %s's network namespace", other)
		}
	}
	must(ns.WithNetNSPath(own, func(ns.NetNS) error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		if len(links) != 1 || links[0].Attrs().Name != "lo" {
			return fmt.Errorf("the tunnel process's namespace holds %d links, want lo alone", len(links))
		}
		return nil
	}))
	fds := func() int {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", proc.Pid()))
		return len(ents)
	}
	before := fds()

	pods := map[string]*netlab.NS{"p1": p1, "p2": p2}
	ips := map[string]string{"p1": "10.42.0.11", "p2": "10.42.0.12"}
	resps := map[string]*api.EnrolResponse{}
	for _, name := range []string{"p1", "p2"} {
		resp, key := enrolment(name, ips[name])
		resps[name] = resp
		cfg := nebulaconfig.Config(resp, key, nebulaconfig.Options{Device: "nebula1", MTU: 1300})
		took, err := AddInstance(ctx, control, name, &AddRequest{Netns: pods[name].Path, Log: dir + "/" + name + ".log", Config: cfg})
		if err != nil {
			t.Fatalf("add %s: %v\n%s", name, err, hostLog)
		}
		// The host says how long its parts of the start took (the
		// agent's ADD stages prepare, nebula and interface).
		if took.Prepare <= 0 || took.Nebula <= 0 || took.Interface <= 0 {
			t.Errorf("add %s: the host reported %+v, want every part timed", name, took)
		}
	}

	// Interfaces and sockets: in the pods' namespaces only.
	for name, n := range pods {
		must(n.Do(func() error {
			l, err := netlink.LinkByName("nebula1")
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
			if len(addrs) != 1 || addrs[0].IP.String() != ips[name] {
				return fmt.Errorf("%s: nebula1 carries %v, want %s", name, addrs, ips[name])
			}
			// At Nebula's default (500) one TCP stream overflows the queue.
			if q := l.Attrs().TxQLen; q != nebulaconfig.TxQueue {
				return fmt.Errorf("%s: nebula1's transmit queue is %d packets, want %d", name, q, nebulaconfig.TxQueue)
			}
			if c, err := net.ListenPacket("udp4", ":4242"); err == nil {
				c.Close()
				return fmt.Errorf("%s: nothing holds UDP 4242 in the pod's namespace", name)
			}
			return nil
		}))
	}
	must(node.Do(func() error {
		if _, err := netlink.LinkByName("nebula1"); err == nil {
			return errors.New("a nebula1 appeared in the node's namespace")
		}
		c, err := net.ListenPacket("udp4", ":4242")
		if err != nil {
			return fmt.Errorf("UDP 4242 is taken in the node's namespace: %w", err)
		}
		return c.Close()
	}))

	// Over Nebula, p1 → p2.
	if r, err := p1.Ping(netip.MustParseAddr(ips["p2"]), 3, 10*time.Second); err != nil || r.Received == 0 {
		t.Fatalf("p1 → p2 over nebula: %v %v\n%s", r, err, hostLog)
	}

	// What the lighthouse knows of each pod: its own underlay, not the node's.
	for name, want := range map[string]string{"p1": "10.201.1.2:4242", "p2": "10.201.2.2:4242"} {
		var all []string
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			all = all[:0]
			if cm := lh.QueryLighthouse(netip.MustParseAddr(ips[name])); cm != nil {
				for _, c := range *cm {
					for _, a := range append(c.Learned, c.Reported...) {
						all = append(all, a.String())
					}
				}
			}
			if strings.Contains(strings.Join(all, " "), want) {
				break
			}
		}
		if !strings.Contains(strings.Join(all, " "), want) {
			t.Errorf("lighthouse holds %v for %s, want %s among them", all, name, want)
		}
		for _, a := range all {
			if strings.HasPrefix(a, nodeAddr+":") || !strings.HasPrefix(a, "10.201.") {
				t.Errorf("lighthouse holds %s for %s: not the pod's underlay (the node's address leaked)", a, name)
			}
		}
	}

	// Listing: both, each with tunnels (lighthouse, and the other pod).
	list, err := Instances(ctx, control)
	must(err)
	if len(list) != 2 || list[0].ID != "p1" || list[1].ID != "p2" || list[0].Tunnels < 2 {
		t.Errorf("instances %+v, want p1 (≥2 tunnels) and p2", list)
	}

	// A reload (a renewal would send this) keeps the key and the tunnel.
	resps["p1"].Blocklist = []string{strings.Repeat("ab", 32)}
	upd := nebulaconfig.Config(resps["p1"], nil, nebulaconfig.Options{Device: "nebula1", MTU: 1300})
	if err := UpdateInstance(ctx, control, "p1", upd); err != nil {
		t.Fatalf("update p1: %v\n%s", err, hostLog)
	}
	if err := UpdateInstance(ctx, control, "nope", upd); !errors.Is(err, errNoInstance) {
		t.Errorf("update of an unknown instance: %v, want errNoInstance", err)
	}
	if r, err := p1.Ping(netip.MustParseAddr(ips["p2"]), 3, 10*time.Second); err != nil || r.Received == 0 {
		t.Fatalf("p1 → p2 after reload: %v %v", r, err)
	}

	// Removing both: interfaces gone, descriptors back to where they were.
	for name, n := range pods {
		must(RemoveInstance(ctx, control, name))
		must(n.Do(func() error {
			if _, err := netlink.LinkByName("nebula1"); err == nil {
				return fmt.Errorf("%s: nebula1 outlived its instance", name)
			}
			return nil
		}))
	}
	if list, _ := Instances(ctx, control); len(list) != 0 {
		t.Errorf("instances after removal: %+v", list)
	}
	// The control connection is kept open between calls (controls): closed
	// here, the server closes its end just after; a descriptor that stays
	// longer than that is a leak.
	controls.CloseIdleConnections()
	after := fds()
	for deadline := time.Now().Add(5 * time.Second); after != before && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		after = fds()
	}
	if after != before {
		t.Errorf("tunnel process holds %d descriptors after its instances left, %d before", after, before)
	}
}

// TestHostRemoveWhileDescriptorsChurn removes pods' instances from a tunnel
// process whose descriptor numbers are reused as soon as they come free.
// Nebula closes its TUN descriptors while its reader may still be going back
// into poll(2) with their numbers; with them reused the reader waited on
// another file for good, and the removal took 5 s and left a thread behind.
func TestHostRemoveWhileDescriptorsChurn(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := context.Background()
	lab := newLab(t, "smtc")
	dir := t.TempDir()
	control := dir + "/host.sock"
	t.Setenv(hostEnv, control)
	t.Setenv(churnEnv, "1")
	hostLog := &tools.SyncBuffer{}
	proc, err := Start(os.Args[0], []string{"-test.run=^$"}, hostLog, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop(5 * time.Second) })

	_, caKey, _ := ed25519.GenerateKey(rand.Reader)
	ca, err := issuer.NewCA(caKey, "test", []netip.Prefix{netip.MustParsePrefix("10.42.0.0/24")}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const pods, rounds = 8, 6
	for round := range rounds {
		var ids []string
		for i := range pods {
			id := fmt.Sprintf("r%dp%d", round, i)
			n, err := lab.NS(id)
			if err != nil {
				t.Fatal(err)
			}
			k, _ := ecdh.X25519().GenerateKey(rand.Reader)
			c, err := ca.Sign(issuer.Host{Name: id, Networks: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 42, 0, byte(10 + i)}), 24)},
				PublicKey: k.PublicKey().Bytes(), NotAfter: time.Now().Add(time.Hour)}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			pem, _ := c.MarshalPEM()
			cfg := nebulaconfig.Config(&api.EnrolResponse{CA: string(ca.PEM()), Certificate: string(pem)}, k.Bytes(), nebulaconfig.Options{Device: "nebula1"})
			if _, err := AddInstance(ctx, control, id, &AddRequest{Netns: n.Path, Log: dir + "/" + id + ".log", Config: cfg}); err != nil {
				t.Fatalf("add %s: %v\n%s", id, err, hostLog)
			}
			ids = append(ids, id)
		}
		var wg sync.WaitGroup
		for _, id := range ids {
			wg.Go(func() {
				if err := RemoveInstance(ctx, control, id); err != nil {
					t.Errorf("remove %s: %v", id, err)
				}
			})
		}
		wg.Wait()
	}
	if n := strings.Count(hostLog.String(), "tunnel readers still running after stop"); n > 0 {
		t.Errorf("%d of %d removals left Nebula's readers running\n%s", n, rounds*pods, hostLog)
	}
	logs, _ := filepath.Glob(dir + "/*.log")
	if len(logs) != rounds*pods {
		t.Fatalf("%d instance logs, want %d", len(logs), rounds*pods)
	}
	for _, l := range logs {
		if b, _ := os.ReadFile(l); bytes.Contains(b, []byte(`"level":"ERROR"`)) {
			t.Errorf("%s: an error logged; the device deleted on purpose is no error:\n%s", l, b)
		}
	}
}
