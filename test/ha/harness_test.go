package ha

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/internal/testenv"
	"github.com/sealmesh/sealmesh/test/netlab"
	"github.com/sealmesh/sealmesh/test/tools"
)

// etcdIP is etcd's address, on the hub's loopback: every coordinator reaches
// it through its link to the hub, and a partition between coordinators can
// leave the store reachable.
const etcdIP = "10.98.0.1"

// lab is three coordinators, one per network namespace, each linked to a hub
// namespace that routes between them and runs etcd, the shared store. The
// test's clients (many agents) dial from the hub.
type lab struct {
	t     testing.TB
	dir   string
	net   *netlab.Lab
	hub   *netlab.NS
	ns    []*netlab.NS
	procs []*exec.Cmd
	store *exec.Cmd // etcd
	// conns counts the attested connections the clients made.
	conns  atomic.Int64
	teeDir string
	policy attest.Attestation
	// workload is the simulated TEE the agents' evidence comes from.
	workload *simulated.Device
	ownerKey ed25519.PrivateKey
	shareKey *ecdh.PrivateKey
	share    []byte
}

// labs numbers the labs of this process, whose namespaces must not collide.
var labs atomic.Int32

func ip(i int) string { return fmt.Sprintf("10.98.%d.2", i+1) }

func apiURL(i int) string { return "https://" + ip(i) + ":7080" }

func newLab(t testing.TB, n int) *lab {
	testenv.RequireRoot(t)
	etcd := tools.Bin(t, "etcd")
	l := &lab{t: t, dir: t.TempDir(), net: netlab.New(fmt.Sprintf("smha%d-%d", os.Getpid()%100000, labs.Add(1))), procs: make([]*exec.Cmd, n)}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range l.procs {
				t.Logf("--- c%d.log\n%s", i+1, tools.Tail(l.path(fmt.Sprintf("c%d.log", i+1))))
			}
		}
		if err := l.net.Close(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	var err error
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	l.hub, err = l.net.NS("hub")
	must(err)
	must(l.hub.Forward())
	must(l.hub.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(etcdIP), Mask: net.CIDRMask(32, 32)}})
	}))
	for i := range n {
		ns, err := l.net.NS(fmt.Sprintf("c%d", i+1))
		must(err)
		must(netlab.Veth(l.hub, fmt.Sprintf("c%d", i+1), fmt.Sprintf("10.98.%d.1/24", i+1), ns, "eth0", ip(i)+"/24"))
		must(ns.DefaultRoute(fmt.Sprintf("10.98.%d.1", i+1)))
		l.ns = append(l.ns, ns)
	}
	l.store, err = l.net.Start(l.hub, l.path("etcd.log"), etcd, "--data-dir", l.path("etcd"), "--name", "ha",
		"--listen-client-urls", "http://"+etcdIP+":2379", "--advertise-client-urls", "http://"+etcdIP+":2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "ha=http://127.0.0.1:2380", "--log-level", "error",
		// As docs/cluster.md asks of a deployment's etcd.
		"--auto-compaction-mode=periodic", "--auto-compaction-retention=5m")
	must(err)
	must(l.wait(func() error { return l.get("http://" + etcdIP + ":2379/health") }, "etcd"))

	// The coordinators' simulated TEE (one image; each keeps its own state).
	l.teeDir = l.path("coordinator-tee")
	dev, err := simulated.New(simulated.MeasurementOf("sealmesh-coordinator"))
	must(err)
	must(dev.Save(l.teeDir))
	meas := simulated.MeasurementOf("sealmesh-coordinator")
	l.policy = attest.Attestation{Simulated: &attest.SNPPolicy{Measurements: []string{hex.EncodeToString(meas[:])}, RootFingerprint: dev.RootFingerprint()}}
	l.workload = &simulated.Device{}
	*l.workload = *dev
	l.workload.Measurement = simulated.MeasurementOf("sealmesh-workload")
	l.ownerKey, _, _, err = owner.NewOwnerKey()
	must(err)
	l.shareKey, _, _, err = owner.NewShareKey()
	must(err)
	return l
}

func (l *lab) path(name string) string { return filepath.Join(l.dir, name) }

// start runs coordinator i with the given state directory, joining the others
// by gossip (no static peers: recovery finds them through gossip).
func (l *lab) start(i int, state string) {
	l.t.Helper()
	l.startWith(i, state, l.teeDir, "etcd:http://"+etcdIP+":2379")
}

// startWith runs coordinator i with a TEE and a store of the test's choosing.
func (l *lab) startWith(i int, state, teeDir, store string) {
	l.t.Helper()
	var join []string
	for j := range l.ns {
		join = append(join, ip(j)+":7946")
	}
	// Every simulated agent of the lab enrols from one address: no
	// per-source limit, or the benchmark measures the limit.
	cmd, err := l.net.Start(l.ns[i], l.path(fmt.Sprintf("c%d.log", i+1)), binDir+"/sealmesh-coordinator",
		"--listen", ip(i)+":7080", "--health-listen", ip(i)+":7081", "--rate-per-source", "0", "--tee", "simulated:"+teeDir,
		"--store", store, "--state-dir", state,
		"--gossip-addr", ip(i)+":7946", "--join", strings.Join(join, ","), "--name", fmt.Sprintf("c%d", i+1))
	if err != nil {
		l.t.Fatal(err)
	}
	l.procs[i] = cmd
}

// kill ends coordinator i with SIGKILL, by the PID this lab started.
func (l *lab) kill(i int) {
	syscall.Kill(-l.procs[i].Process.Pid, syscall.SIGKILL)
	for range 200 {
		if syscall.Kill(-l.procs[i].Process.Pid, 0) != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *lab) state(i int) string { return l.path(fmt.Sprintf("c%d-state", i+1)) }

// plainHTTP is a client for the plain HTTP ports (health, metrics, etcd)
// that dials from the hub, a connection per request.
func (l *lab) plainHTTP() *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: l.dial((&net.Dialer{}).DialContext)}}
}

// dial makes connections from the hub.
func (l *lab) dial(d func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := l.hub.Do(func() error {
			var err error
			c, err = d(ctx, network, addr)
			return err
		})
		return c, err
	}
}

func (l *lab) get(url string) error {
	c := l.plainHTTP()
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// storeOps is how many key-value operations etcd has served (its own gRPC
// counters: Range, Txn, Put, DeleteRange).
func (l *lab) storeOps(b testing.TB) int {
	c := l.plainHTTP()
	n, err := tools.EtcdOps(c, "http://"+etcdIP+":2379", "")
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// wait polls cond for up to 60 s (a bound against hangs, not a timing goal).
func (l *lab) wait(cond func() error, what string) error {
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = cond(); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s: not within 60s: %w", what, err)
}

func (l *lab) ready(i int) error { return l.get("http://" + ip(i) + ":7081/readyz") }

// client reaches the coordinators at urls over attested TLS, from the hub.
func (l *lab) client(urls ...string) *api.Client {
	// Connections are kept, as an agent's are (atls.Pool).
	dial := l.dial((&net.Dialer{Timeout: 3 * time.Second}).DialContext)
	pool := atls.NewPool(attest.Satisfying(l.policy), nil, func(ctx context.Context, network, addr string) (net.Conn, error) {
		l.conns.Add(1)
		return dial(ctx, network, addr)
	})
	return api.NewClient(strings.Join(urls, ","), pool)
}

// all is a client for every coordinator, starting at the k-th, so load spreads.
func (l *lab) all(k int) *api.Client {
	var urls []string
	for j := range l.ns {
		urls = append(urls, apiURL((k+j)%len(l.ns)))
	}
	return l.client(urls...)
}

func evilPolicy(d *simulated.Device) attest.Attestation {
	m := simulated.MeasurementOf("evil-coordinator")
	return attest.Attestation{Simulated: &attest.SNPPolicy{Measurements: []string{hex.EncodeToString(m[:])}, RootFingerprint: d.RootFingerprint()}}
}

// create sets the first manifest at coordinator 0.
func (l *lab) create() *api.ManifestResponse {
	l.t.Helper()
	resp, err := l.setManifest("1h", "")
	if err != nil {
		l.t.Fatal(err)
	}
	l.share = resp.SeedShares[0].Share
	return resp
}

func (l *lab) setManifest(lifetime, parent string) (*api.ManifestResponse, error) {
	req, err := l.manifestRequest(lifetime, parent)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return l.all(0).SetManifest(ctx, req)
}

// manifestRequest is the mesh's manifest, its coordinator role l.policy,
// signed by the owner.
func (l *lab) manifestRequest(lifetime, parent string) (*api.ManifestRequest, error) {
	return l.manifestRequestWith(lifetime, parent, nil)
}

// manifestRequestWith is manifestRequest with extra top-level fields.
func (l *lab) manifestRequestWith(lifetime, parent string, extra map[string]any) (*api.ManifestRequest, error) {
	wm := simulated.MeasurementOf("sealmesh-workload")
	man := map[string]any{
		"version":         1,
		"owners":          []any{map[string]string{"name": "owner", "key": base64.StdEncoding.EncodeToString(l.ownerKey.Public().(ed25519.PublicKey))}},
		"seedShareOwners": []any{map[string]string{"name": "bob", "key": base64.StdEncoding.EncodeToString(l.shareKey.PublicKey().Bytes())}},
		"coordinators":    []any{map[string]any{"name": "coordinator", "attestation": l.policy}},
		// A /12: a released address stays taken until its certificate
		// expires, and the benchmark's runs enrol tens of thousands.
		"networks":            []string{"10.32.0.0/12"},
		"certificateLifetime": lifetime,
		"lighthouses":         []any{map[string]string{"name": "lh1", "overlayIP": "10.32.0.1", "underlay": "192.0.2.1:4242"}},
		"roles": []any{map[string]any{"name": "pod", "groups": []string{"pods"}, "attestation": map[string]any{"simulated": map[string]any{
			"measurements": []string{hex.EncodeToString(wm[:])}, "rootFingerprint": l.workload.RootFingerprint(),
		}}}},
	}
	for k, v := range extra {
		man[k] = v
	}
	raw, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	return owner.Request(raw, parent, l.ownerKey)
}

// recoverWithShare hands coordinator i the seed from bob's share, as meshctl
// recover does.
func (l *lab) recoverWithShare(i int) error {
	seed, err := seal.OpenWith(l.shareKey, seal.SeedShareInfo, l.share)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := l.client(apiURL(i))
	rk, err := c.RecoveryKey(ctx)
	if err != nil {
		return err
	}
	enc, err := seal.SealTo(rk, seal.RecoveryInfo, seed)
	if err != nil {
		return err
	}
	_, err = c.Recover(ctx, &api.RecoverRequest{Seed: enc})
	return err
}

func (l *lab) status(i int) (*api.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return l.client(apiURL(i)).Status(ctx)
}

// blackhole cuts coordinator i off from the other coordinators (not from the
// store) by blackhole routes in its namespace; the returned func heals it.
func (l *lab) blackhole(i int) func() {
	l.t.Helper()
	var routes []*netlink.Route
	for j := range l.ns {
		if j != i {
			routes = append(routes, &netlink.Route{Dst: &net.IPNet{IP: net.ParseIP(ip(j)), Mask: net.CIDRMask(32, 32)}, Type: unix.RTN_BLACKHOLE})
		}
	}
	if err := l.ns[i].Do(func() error {
		for _, r := range routes {
			if err := netlink.RouteAdd(r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		l.t.Fatal(err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.ns[i].Do(func() error {
				for _, r := range routes {
					netlink.RouteDel(r)
				}
				return nil
			})
		})
	}
}
