package node

import (
	"context"
	"testing"

	"github.com/sealmesh/sealmesh/agent/node/nodetest"
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
