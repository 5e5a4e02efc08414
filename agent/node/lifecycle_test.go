package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/agent/follow"
	"github.com/sealmesh/sealmesh/agent/node/nodetest"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/test/tools"
)

func podRequest(id, netns string) *cniapi.Request {
	return &cniapi.Request{ContainerID: id, Netns: netns, IfName: "nebula1", PodNamespace: "shop", PodName: "web-" + id, PodUID: fmt.Sprintf("%x-0000", id),
		Network: "k8s-pod-network", AttachIfName: "eth0"}
}

// TestPodLifecycle: ADD enrols the pod and starts its Nebula with the
// certificate the coordinator assigned; ADD again returns the same
// attachment; CHECK finds it up; DEL stops it, forgets it and gives its
// address back.
func TestPodLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/a")
	dir := t.TempDir()
	a := agentOver(t, m, f, dir)

	r := podRequest("a", "/run/netns/a")
	res, err := a.Add(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if res.MTU != 1500-nebulaOverhead || !strings.HasPrefix(res.Address, "10.42.") || len(res.Addresses) != 2 {
		t.Fatalf("ADD result %+v", res)
	}
	if got := f.Running(); !slices.Equal(got, []string{"a-nebula1"}) {
		t.Fatalf("instances %v", got)
	}
	again, err := a.Add(ctx, r)
	if err != nil || again.Address != res.Address || f.Starts() != 1 {
		t.Fatalf("second ADD: %+v, %v (%d starts)", again, err, f.Starts())
	}
	if err := a.Check(ctx, r); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if st := a.Status(ctx); !st.Ready {
		t.Fatalf("STATUS: %+v", st)
	}
	rec, err := os.Stat(filepath.Join(dir, "pods", "a-nebula1.json"))
	if err != nil || rec.Mode().Perm() != 0o600 {
		t.Fatalf("pod record: %v %v", rec, err)
	}
	if n := m.Hosts(); n != 1 {
		t.Fatalf("coordinator holds %d leases, want 1", n)
	}

	if err := a.Del(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got := f.Running(); len(got) != 0 {
		t.Fatalf("instances after DEL %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "pods", "a-nebula1.json")); !os.IsNotExist(err) {
		t.Fatalf("record after DEL: %v", err)
	}
	if err := a.Check(ctx, r); err == nil {
		t.Fatal("CHECK after DEL passed")
	}
	if err := a.Del(ctx, r); err != nil {
		t.Fatalf("DEL of an unknown pod: %v", err)
	}
}

// TestAddFailures: a failed ADD leaves no tunnel, no record and no lease.
func TestAddFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := nodetest.NewMesh(t, "1h")
	for _, tc := range []struct {
		name  string
		req   *cniapi.Request
		setup func(*nodetest.FakeNode)
		want  string
	}{
		{"no netns", &cniapi.Request{ContainerID: "a", IfName: "nebula1"}, nil, "netns is required"},
		{"netns gone", podRequest("a", "/run/netns/gone"), nil, "no such namespace"},
		{"tunnel does not start", podRequest("a", "/run/netns/a"), func(f *nodetest.FakeNode) { f.Refuse(errStart) }, "tunnel does not start"},
		{"bad interface name", &cniapi.Request{ContainerID: "a", Netns: "/run/netns/a", IfName: "../x"}, nil, "ifName"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := nodetest.NewFakeNode("/run/netns/a")
			if tc.setup != nil {
				tc.setup(f)
			}
			dir := t.TempDir()
			a := agentOver(t, m, f, dir)
			if _, err := a.Add(ctx, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ADD: %v, want %q", err, tc.want)
			}
			if got := f.Running(); len(got) != 0 {
				t.Fatalf("instances %v", got)
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, "pods")); slices.ContainsFunc(entries, func(e os.DirEntry) bool { return strings.HasSuffix(e.Name(), ".json") }) {
				t.Fatalf("records left: %v", entries)
			}
			if n := m.Hosts(); n != 0 {
				t.Fatalf("coordinator holds %d leases after a failed ADD", n)
			}
		})
	}
}

var errStart = errorString("tunnel does not start")

type errorString string

func (e errorString) Error() string { return string(e) }

// TestRestore: a restarted agent re-adopts a pod whose tunnel still runs
// (no new enrolment), attaches anew one whose tunnel stopped while its netns
// remains, and forgets (releasing its address) one whose netns is gone.
func TestRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/up", "/run/netns/stopped", "/run/netns/gone")
	dir := t.TempDir()
	first := agentOver(t, m, f, dir)
	addrs := map[string]string{}
	for _, id := range []string{"up", "stopped", "gone"} {
		res, err := first.Add(ctx, podRequest(id, "/run/netns/"+id))
		if err != nil {
			t.Fatal(err)
		}
		addrs[id] = res.Address
	}
	// The agent stops; meanwhile one tunnel stops and one pod goes.
	f.Stop(nodetest.Host, "stopped-nebula1")
	f.RemoveNetns("/run/netns/gone")
	f.Stop(nodetest.Host, "gone-nebula1")
	starts := f.Starts()

	second := agentOver(t, m, f, dir)
	second.Restore(ctx)
	if got := f.Running(); !slices.Equal(got, []string{"stopped-nebula1", "up-nebula1"}) {
		t.Fatalf("instances after restore %v", got)
	}
	if f.Starts() != starts+1 {
		t.Fatalf("%d starts during restore, want 1 (the stopped pod)", f.Starts()-starts)
	}
	for _, id := range []string{"up", "stopped"} {
		if err := second.Check(ctx, podRequest(id, "/run/netns/"+id)); err != nil {
			t.Fatalf("CHECK %s after restore: %v", id, err)
		}
	}
	if err := second.Check(ctx, podRequest("gone", "/run/netns/gone")); err == nil {
		t.Fatal("the gone pod is still attached")
	}
	if n := m.Hosts(); n != 2 {
		t.Fatalf("coordinator holds %d leases, want 2 (the gone pod's released)", n)
	}
}

// TestRunRestartsStoppedTunnels: Run notices a tunnel process that died
// and attaches its pods anew.
func TestRunRestartsStoppedTunnels(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/a")
	a := agentOver(t, m, f, t.TempDir())
	r := podRequest("a", "/run/netns/a")
	if _, err := a.Add(ctx, r); err != nil {
		t.Fatal(err)
	}
	f.Crash()
	a.tend(ctx)
	if got := f.Running(); !slices.Equal(got, []string{"a-nebula1"}) {
		t.Fatalf("instances after a crash and a round of Run: %v", got)
	}
	if err := a.Check(ctx, r); err != nil {
		t.Fatal(err)
	}
}

// TestRenewal: two thirds into its certificate's lifetime a pod is renewed
// for the same key (the tunnel proves possession) and address, and its
// tunnel reloads the new certificate; a pod whose manifest is no longer the
// current one is renewed at once.
func TestRenewal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/a")
	clk := m.Clock
	fol := &follow.Follower{Client: m.Client, Log: testLog(t)}
	a := New(Config{Log: testLog(t), Coordinator: m.Client, Issuer: m.Dev, StateDir: t.TempDir(), Tunnels: f, Netns: f, Now: clk.Now, Follower: fol})
	r := podRequest("a", "/run/netns/a")
	res, err := a.Add(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	first := a.pods[key(r)].fingerprint

	a.tend(ctx) // not due
	if f.Updates() != 0 {
		t.Fatalf("renewed %d times before due", f.Updates())
	}
	clk.Add(41 * time.Minute)
	a.tend(ctx)
	if f.Updates() != 1 {
		t.Fatalf("%d renewals two thirds in, want 1", f.Updates())
	}
	second := a.pods[key(r)].fingerprint
	if second == first || a.pods[key(r)].result.Address != res.Address {
		t.Fatalf("renewal: fingerprint %s → %s, address %s → %s", first, second, res.Address, a.pods[key(r)].result.Address)
	}

	// The owner changes the manifest: the follower sees it, the pod renews.
	m.SetManifest("sealmesh-coordinator-v2", m.Coordinator.Status().Head)
	if err := fol.Look(ctx); err != nil {
		t.Fatal(err)
	}
	a.tend(ctx)
	if f.Updates() != 2 || a.pods[key(r)].head != fol.Head() {
		t.Fatalf("after a manifest change: %d renewals, pod on %s, manifest %s", f.Updates(), a.pods[key(r)].head, fol.Head())
	}
}

// TestRunFollowsTheManifest: the agent's Run (node mode and pod mode alike)
// runs the follower, which hands every manifest it reads to the client's
// trust in coordinators. Before, only the node agent's main refreshed its
// trust; pod mode kept trusting the coordinator roles it started with.
func TestRunFollowsTheManifest(t *testing.T) {
	t.Parallel()
	m := nodetest.NewMesh(t, "1h")
	trust := &seenTrust{}
	a := New(Config{Log: testLog(t), Coordinator: m.Client, Issuer: m.Dev, StateDir: t.TempDir(), Tunnels: nodetest.NewFakeNode(), Netns: nodetest.NewFakeNode(),
		Follower: &follow.Follower{Client: m.Client, Trust: trust, Every: 50 * time.Millisecond, Log: testLog(t)}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	first := m.Coordinator.Status().Head
	waitFor(t, "trust follows the manifest", func() bool { return trust.has(first) })
	second := m.SetManifest("sealmesh-coordinator-v2", first)
	waitFor(t, "trust follows the update", func() bool { return trust.has(second) })
}

type seenTrust struct {
	mu    sync.Mutex
	heads map[string]bool
}

func (s *seenTrust) Follow(info *api.ManifestInfo) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.heads == nil {
		s.heads = map[string]bool{}
	}
	s.heads[info.Head] = true
	return nil
}

func (s *seenTrust) has(h string) bool { s.mu.Lock(); defer s.mu.Unlock(); return s.heads[h] }

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	// The deadline only turns a hang into a failure.
	for deadline := time.Now().Add(time.Minute); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
	}
}

// TestGC: GC of a network stops the pods the runtime no longer lists in
// it, and only those.
func TestGC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/keep", "/run/netns/drop", "/run/netns/other")
	a := agentOver(t, m, f, t.TempDir())
	for _, id := range []string{"keep", "drop", "other"} {
		r := podRequest(id, "/run/netns/"+id)
		if id == "other" {
			r.Network = "another-network"
		}
		if _, err := a.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	a.GC(ctx, "k8s-pod-network", []cniapi.Attachment{{ContainerID: "keep", IfName: "eth0"}})
	if got := f.Running(); !slices.Equal(got, []string{"keep-nebula1", "other-nebula1"}) {
		t.Fatalf("instances after GC %v", got)
	}
	if n := m.Hosts(); n != 2 {
		t.Fatalf("coordinator holds %d leases after GC, want 2", n)
	}
}

// agentOver is an agent over m and f with its state in dir, on m's clock.
func agentOver(t *testing.T, m *nodetest.Mesh, f *nodetest.FakeNode, dir string) *Agent {
	return New(Config{Log: testLog(t), Coordinator: m.Client, Issuer: m.Dev, StateDir: dir,
		Tunnels: f, Netns: f, Now: m.Clock.Now})
}

// testLog is a logger whose lines are shown when the test fails. They are
// buffered, not sent to t.Log: the agent's goroutines may still log after
// the test ended, where t.Log panics.
func testLog(t *testing.T) *slog.Logger {
	b := &tools.SyncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, nil))
}
