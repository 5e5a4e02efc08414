package node

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/node/nodetest"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

// Issue 29: each stage of an ADD is timed on the agent's metrics (and in
// BenchmarkCNILatency), so that what is not crypto or kernel work shows.
func TestAddStagesTimed(t *testing.T) {
	t.Parallel()
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/a")
	a := agentOver(t, m, f, t.TempDir())
	if _, err := a.Add(context.Background(), podRequest("a", "/run/netns/a")); err != nil {
		t.Fatal(err)
	}
	mfs, err := a.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "sealmesh_agent_add_stage_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			counts[mt.GetLabel()[0].GetValue()] = mt.GetHistogram().GetSampleCount()
		}
	}
	for _, st := range addStages {
		if counts[st] != 1 {
			t.Errorf("stage %s observed %d times, want 1 (%v)", st, counts[st], counts)
		}
	}
}

// Issue 29: a pod's record is written without fsync (it outlives the
// agent, not the node; two fsyncs were a tenth of an ADD), and a record a
// crash of the node left empty is dropped on restore, not kept and
// reported at every start. Not parallel: it hooks atomicfile's steps,
// which every write in this package passes.
func TestPodRecordUnsynced(t *testing.T) {
	var steps []string
	atomicfile.AfterStep = func(s string) { steps = append(steps, s) }
	t.Cleanup(func() { atomicfile.AfterStep = nil })
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/a")
	dir := t.TempDir()
	a := agentOver(t, m, f, dir)
	if _, err := a.Add(context.Background(), podRequest("a", "/run/netns/a")); err != nil {
		t.Fatal(err)
	}
	// The record is the ADD's last write (the coordinator's, in this
	// process, come before it).
	i := len(steps) - 1
	for i > 0 && steps[i] != "created" {
		i--
	}
	last := steps[max(i, 0):]
	if want := []string{"created", "written", "closed", "renamed"}; !slices.Equal(last, want) {
		t.Errorf("the pod record's write went through %v, want %v (no fsync)", last, want)
	}
	atomicfile.AfterStep = nil

	empty := filepath.Join(dir, "pods", "crashed-nebula1.json")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	agentOver(t, m, f, dir).Restore(context.Background())
	if _, err := os.Stat(empty); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the empty record is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pods", "a-nebula1.json")); err != nil {
		t.Errorf("the pod's record: %v", err)
	}
}

// Issue 29: the pod's MTU is read while its enrolment is under way, not
// before it. Here the lookup answers only once the enrolment has asked for
// evidence: an ADD that read the MTU first would wait for it in vain.
func TestMTUReadWhileEnrolling(t *testing.T) {
	t.Parallel()
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/a")
	asked := make(chan struct{})
	var once sync.Once
	iss := issuerSeen{m.Dev, func() { once.Do(func() { close(asked) }) }}
	a := New(Config{Log: testLog(t), Coordinator: m.Client, Issuer: iss, StateDir: t.TempDir(),
		Tunnels: f, Netns: mtuAfter{f, asked}, Now: m.Clock.Now})
	if _, err := a.Add(context.Background(), podRequest("a", "/run/netns/a")); err != nil {
		t.Fatal(err)
	}
}

// An ADD whose namespace is gone by the time its MTU is read fails, and
// the address its enrolment took goes back.
func TestMTUFailureReleases(t *testing.T) {
	t.Parallel()
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/a")
	a := agentOver(t, m, f, t.TempDir())
	before := m.Hosts()
	if _, err := a.Add(context.Background(), podRequest("gone", "/run/netns/gone")); err == nil {
		t.Fatal("ADD into a namespace that is gone succeeded")
	}
	if got := m.Hosts(); got != before {
		t.Errorf("the coordinator holds %d hosts after the failed ADD, %d before: its lease was not released", got, before)
	}
	if f.Starts() != 0 {
		t.Errorf("%d tunnels started for a failed ADD", f.Starts())
	}
}

// issuerSeen calls seen at each request for evidence.
type issuerSeen struct {
	attest.Issuer
	seen func()
}

func (i issuerSeen) Evidence(rd [64]byte) (attest.Evidence, error) {
	i.seen()
	return i.Issuer.Evidence(rd)
}

// mtuAfter answers MTU only once after is closed.
type mtuAfter struct {
	*nodetest.FakeNode
	after <-chan struct{}
}

func (m mtuAfter) MTU(netns string) (int, error) {
	select {
	case <-m.after:
		return m.FakeNode.MTU(netns)
	case <-time.After(10 * time.Second):
		return 0, errors.New("the MTU lookup waited 10 s for the enrolment: the ADD reads the MTU before it enrols")
	}
}
