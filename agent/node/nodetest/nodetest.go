// Package nodetest has what tests of the agent need in place of what needs
// root: a fake node (tunnel processes and network namespaces, satisfying
// node.Tunnels and node.Netns), and a real coordinator on httptest with the
// simulated TEE.
package nodetest

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/jointoken"
	"github.com/sealmesh/sealmesh/test/mesh"
)

// FakeNode stands in for what needs root: tunnel processes (one, "h0") and
// network namespaces. Everything else in the agent's tests is real: the
// coordinator, the simulated TEE, enrolment, the records on disk.
type FakeNode struct {
	mu        sync.Mutex
	instances map[string]*instance // by ID, all in host h0
	down      bool                 // h0 crashed
	netns     map[string]bool
	starts    int
	updates   int
	refuse    error // Start fails with it
	adopted   map[string]bool
}

// Starts and Updates count the instances started and reconfigured.
func (f *FakeNode) Starts() int { f.mu.Lock(); defer f.mu.Unlock(); return f.starts }

// Updates counts the instances reconfigured (renewals).
func (f *FakeNode) Updates() int { f.mu.Lock(); defer f.mu.Unlock(); return f.updates }

// Refuse makes Start fail with err.
func (f *FakeNode) Refuse(err error) { f.mu.Lock(); defer f.mu.Unlock(); f.refuse = err }

// RemoveNetns is a pod's network namespace going away.
func (f *FakeNode) RemoveNetns(netns string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.netns, netns)
}

type instance struct {
	netns  string
	config nebulaconfig.Nebula
}

// NewFakeNode is a node with the network namespaces netns and a tunnel
// process running nothing.
func NewFakeNode(netns ...string) *FakeNode {
	f := &FakeNode{instances: map[string]*instance{}, netns: map[string]bool{}}
	for _, n := range netns {
		f.netns[n] = true
	}
	return f
}

// Host is the one tunnel process a FakeNode has.
const Host = "h0"

// Start runs the instance, and says its parts took a microsecond each.
func (f *FakeNode) Start(_ context.Context, id string, req *tunnel.AddRequest) (string, tunnel.Started, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return "", tunnel.Started{}, f.refuse
	}
	if !f.netns[req.Netns] {
		return "", tunnel.Started{}, fmt.Errorf("netns %s: no such namespace", req.Netns)
	}
	f.down = false
	f.starts++
	f.instances[id] = &instance{netns: req.Netns, config: *req.Config}
	return Host, tunnel.Started{Prepare: time.Microsecond, Nebula: time.Microsecond, Interface: time.Microsecond}, nil
}

func (f *FakeNode) Stop(host, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.instances, id)
}

func (f *FakeNode) Drop(string) {}

func (f *FakeNode) Alive(host string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return host == Host && !f.down
}

func (f *FakeNode) Instances(_ context.Context, host string) ([]tunnel.InstanceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if host != Host || f.down {
		return nil, errors.New("no such tunnel process")
	}
	var out []tunnel.InstanceInfo
	for id := range f.instances {
		out = append(out, tunnel.InstanceInfo{ID: id, Tunnels: 1})
	}
	return out, nil
}

func (f *FakeNode) Update(_ context.Context, host, id string, cfg *nebulaconfig.Nebula) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.instances[id]
	if !ok {
		return fmt.Errorf("no instance %s", id)
	}
	// A renewal carries no key: the instance keeps its own.
	key := in.config.PKI.Key
	in.config = *cfg
	in.config.PKI.Key = key
	f.updates++
	return nil
}

// Prove proves possession with the key the instance was started with, as
// a tunnel process does.
func (f *FakeNode) Prove(_ context.Context, host, id string, req *tunnel.ProveRequest) ([]byte, error) {
	f.mu.Lock()
	in, ok := f.instances[id]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no instance %s", id)
	}
	c := in.config
	priv, _, _, err := cert.UnmarshalPrivateKeyFromPEM([]byte(c.PKI.Key))
	if err != nil {
		return nil, err
	}
	crt, _, err := cert.UnmarshalCertificateFromPEM([]byte(c.PKI.Cert))
	if err != nil {
		return nil, err
	}
	return api.Prove(priv, req.PossessionKey, req.Nonce, crt.PublicKey())
}

func (f *FakeNode) Adopt(context.Context) map[string]map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return map[string]map[string]bool{}
	}
	ids := map[string]bool{}
	for id := range f.instances {
		ids[id] = true
	}
	f.adopted = ids
	return map[string]map[string]bool{Host: ids}
}

func (f *FakeNode) Keep(string) {}

func (f *FakeNode) Settle(_ context.Context, claimed map[string]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range f.adopted {
		if !claimed[Host+"/"+id] {
			delete(f.instances, id)
		}
	}
	f.adopted = nil
}

func (f *FakeNode) Hosts() []string { return []string{Host} }

func (f *FakeNode) Metrics(context.Context, string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("# no metrics\n")), nil
}

func (f *FakeNode) MTU(netns string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.netns[netns] {
		return 0, fmt.Errorf("pod netns %s: no such namespace", netns)
	}
	return 1500, nil
}

// HasAddress holds for a namespace an instance runs in with a certificate
// for addr.
func (f *FakeNode) HasAddress(netns, ifName, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, in := range f.instances {
		if in.netns == netns && slices.Contains(strings.Fields(certNetworks(in.config)), addr) {
			return nil
		}
	}
	return fmt.Errorf("interface %s in %s lacks %s", ifName, netns, addr)
}

func certNetworks(cfg nebulaconfig.Nebula) string {
	crt, _, err := cert.UnmarshalCertificateFromPEM([]byte(cfg.PKI.Cert))
	if err != nil {
		return ""
	}
	var out []string
	for _, n := range crt.Networks() {
		out = append(out, n.String())
	}
	return strings.Join(out, " ")
}

func (f *FakeNode) Exists(netns string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.netns[netns]
}

// Crash is the tunnel process dying with its instances.
func (f *FakeNode) Crash() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = true
	clear(f.instances)
}

// Running lists the instances that run, sorted.
func (f *FakeNode) Running() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.instances {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Mesh is a coordinator on httptest (plain HTTP, file store) whose
// manifest admits the simulated TEE's "sealmesh-workload", and that TEE.
type Mesh struct {
	Clock       *Clock
	Coordinator *coordinator.Coordinator
	Client      *api.Client
	Dev         *simulated.Device
	// SetManifest has the owner sign a manifest whose coordinator role is
	// image, replacing parent ("" to create the mesh); it returns the head.
	SetManifest func(image, parent string) string
	// LighthouseToken joins the mesh's lighthouse, lighthouse-1.
	LighthouseToken string
}

// NewMesh starts a coordinator with a mesh whose certificates last lifetime.
func NewMesh(t *testing.T, lifetime string) *Mesh {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := &Clock{t: time.Now()}
	c, err := coordinator.Open(ctx, coordinator.Config{Log: slog.New(slog.DiscardHandler), Store: st, StateDir: t.TempDir(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	dev, err := simulated.New(simulated.MeasurementOf("sealmesh-workload"))
	if err != nil {
		t.Fatal(err)
	}
	key, _, pub, err := owner.NewOwnerKey()
	if err != nil {
		t.Fatal(err)
	}
	m := &Mesh{Clock: clk, Coordinator: c, Client: api.NewClient(srv.URL), Dev: dev}
	// The first manifest holds the token's hash; the token gets the mesh's
	// ID once the mesh has one.
	tok, err := jointoken.New(strings.Repeat("0", 64))
	if err != nil {
		t.Fatal(err)
	}
	m.SetManifest = func(image, parent string) string {
		t.Helper()
		meas := simulated.MeasurementOf(image)
		role := map[string]any{"simulated": map[string]any{"measurements": []string{hex.EncodeToString(meas[:])}, "rootFingerprint": dev.RootFingerprint()}}
		raw, err := mesh.Manifest(dev.RootFingerprint(), tok.Hash(), pub, role, nil, nil, lifetime)
		if err != nil {
			t.Fatal(err)
		}
		req, err := owner.Request(raw, parent, key)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.SetManifest(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status.Head
	}
	m.SetManifest("sealmesh-coordinator", "")
	lh, err := tok.For(c.MeshID())
	if err != nil {
		t.Fatal(err)
	}
	m.LighthouseToken = lh.String()
	return m
}

// Hosts is the number of live leases the coordinator holds.
func (m *Mesh) Hosts() int { return m.Coordinator.Status().HostCount }

// Clock is a settable clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Add moves the clock on.
func (c *Clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
