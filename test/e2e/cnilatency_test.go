package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/node"
	"github.com/sealmesh/sealmesh/internal/testenv"
	"github.com/sealmesh/sealmesh/test/mesh"
)

// BenchmarkCNILatency: CNI ADD and DEL of the whole chain, with sealmesh-cni
// (bridge + host-local + sealmesh: enrolment with simulated SNP evidence and a
// Nebula start per pod), without it (bridge + host-local), and with the
// reference tuning plugin, tuning nothing, in its place (the least any
// chained plugin costs: on a host whose process starts are slow, most of
// what a chained plugin adds), for 100 pods in sequence and 100 in parallel
// batches of 10; p50 and p99 per operation, and with sealmesh-cni the mean
// of each stage of the agent's ADD (from its
// sealmesh_agent_add_stage_seconds) over the run, and in sequence what the
// pods that came when every tunnel process was full paid over the p50.
func BenchmarkCNILatency(b *testing.B) {
	testenv.RequireRoot(b)
	ctx := context.Background()
	prefix := fmt.Sprintf("smlat%d", os.Getpid()%100000)
	m, err := mesh.Up(ctx, mesh.Options{BinDir: binDir, WorkDir: b.TempDir(), Prefix: prefix})
	defer func() {
		if err := m.Close(context.Background()); err != nil {
			b.Errorf("cleanup: %v", err)
		}
	}()
	if err != nil {
		b.Fatal(err)
	}
	run := 0
	for _, chain := range []string{mesh.ChainBridgeOnly, mesh.ChainBridgeTuning, mesh.ChainBridge} {
		for _, batch := range []int{1, 10} {
			b.Run(fmt.Sprintf("chain=%s/parallel=%d", chain, batch), func(b *testing.B) {
				if err := m.UseChain(chain); err != nil {
					b.Fatal(err)
				}
				var adds, dels, full []time.Duration
				before := readStages(b, m)
				m.Plugins.Take()
				for range b.N {
					run++
					a, d := cniRound(b, m, ctx, fmt.Sprintf("l%d", run), 100, batch)
					adds, dels = append(adds, a...), append(dels, d...)
					full = append(full, everyFull(a)...)
				}
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(ms(pct(adds, 50)), "ADD-p50-ms")
				b.ReportMetric(ms(pct(adds, 99)), "ADD-p99-ms")
				b.ReportMetric(ms(pct(dels, 50)), "DEL-p50-ms")
				b.ReportMetric(ms(pct(dels, 99)), "DEL-p99-ms")
				// Each plugin's exec, start to exit: what of the
				// chain's ADD is whose.
				for e, ds := range m.Plugins.Take() {
					if e.Command == "ADD" {
						b.ReportMetric(ms(pct(ds, 50)), "plugin-"+e.Plugin+"-ADD-p50-ms")
					}
				}
				if chain != mesh.ChainBridge {
					return
				}
				if batch == 1 {
					// The pods that came when every tunnel process
					// was full: what they paid over the others.
					b.ReportMetric(ms(pct(full, 50)-pct(adds, 50)), "ADD-when-full-over-p50-ms")
				}
				for metric, a := range readStages(b, m) {
					if n := a[1] - before[metric][1]; n > 0 {
						b.ReportMetric((a[0]-before[metric][0])/n*1000, metric)
					}
				}
			})
		}
	}
}

// cniRound adds n pods, batch at a time, then deletes them the same way,
// timing each ADD and DEL.
func cniRound(b *testing.B, m *mesh.Mesh, ctx context.Context, tag string, n, batch int) (adds, dels []time.Duration) {
	var mu sync.Mutex
	pods := make([]*mesh.Pod, n)
	do := func(f func(i int)) {
		for start := 0; start < n; start += batch {
			var wg sync.WaitGroup
			for i := start; i < min(start+batch, n); i++ {
				wg.Add(1)
				go func() { defer wg.Done(); f(i) }()
			}
			wg.Wait()
		}
	}
	do(func(i int) {
		t0 := time.Now()
		p, err := m.AddPod(ctx, fmt.Sprintf("%s-%d", tag, i))
		d := time.Since(t0)
		if err != nil {
			b.Error(err)
			return
		}
		mu.Lock()
		pods[i], adds = p, append(adds, d)
		mu.Unlock()
	})
	if b.Failed() {
		b.FailNow()
	}
	do(func(i int) {
		t0 := time.Now()
		err := m.DelPod(ctx, pods[i])
		d := time.Since(t0)
		if err != nil {
			b.Error(err)
		}
		// The pod's netns goes, as a runtime's does after DEL (untimed).
		// Kept, thousands piled up over make bench's rounds, and every
		// plugin's exec slowed with them: bridge's took 33 ms in the
		// first chain's rounds and 63 in the last's, sealmesh's.
		if err := m.Lab.Remove(pods[i].NS); err != nil {
			b.Error(err)
		}
		mu.Lock()
		dels = append(dels, d)
		mu.Unlock()
	})
	for _, p := range pods {
		delete(m.Pods, p.Name)
	}
	return adds, dels
}

// everyFull are the ADDs of a sequence that came when every tunnel process
// was full (the 17th, 33rd, ... at the agent's default sixteen per
// process): before the agent kept a spare, each waited for a process to
// start.
func everyFull(adds []time.Duration) []time.Duration {
	var out []time.Duration
	for i := node.DefaultPodsPerProcess; i < len(adds); i += node.DefaultPodsPerProcess {
		out = append(out, adds[i])
	}
	return out
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// addStageRE matches the agent's ADD stage histogram's sum and count lines.
var addStageRE = regexp.MustCompile(`(?m)^sealmesh_agent_add_stage_seconds_(sum|count)\{stage="(\w+)"\} (\S+)$`)

// coordinatorStageRE matches the coordinator's enrolment histograms: each
// stage's (verify, record) and the whole answer's.
var coordinatorStageRE = regexp.MustCompile(`(?m)^sealmesh_coordinator_enrolment(?:_stage)?_seconds_(sum|count)(?:\{stage="(\w+)"\})? (\S+)$`)

// stageSources are the stage histograms the benchmark reports the means
// of, each under its metric's prefix: the agent's ADD stages, and the
// coordinator's enrolment stages ("enrolment" is its whole answer).
var stageSources = []struct {
	component, prefix string
	re                *regexp.Regexp
}{
	{"agent", "stage-", addStageRE},
	{"coordinator", "coordinator-", coordinatorStageRE},
}

// readStages reads every stage's seconds and count, by the metric its
// mean is reported as (stage-enrol-ms, coordinator-verify-ms, ...).
func readStages(b *testing.B, m *mesh.Mesh) map[string][2]float64 {
	out := map[string][2]float64{}
	for _, src := range stageSources {
		st, err := stages(m, src.component, src.re)
		if err != nil {
			b.Fatal(err)
		}
		for name, v := range st {
			out[src.prefix+name+"-ms"] = v
		}
	}
	return out
}

func stages(m *mesh.Mesh, component string, re *regexp.Regexp) (map[string][2]float64, error) {
	text, err := m.Metrics(component)
	if err != nil {
		return nil, err
	}
	out := map[string][2]float64{}
	for _, g := range re.FindAllStringSubmatch(text, -1) {
		if g[2] == "" {
			g[2] = "enrolment"
		}
		v, err := strconv.ParseFloat(g[3], 64)
		if err != nil {
			return nil, err
		}
		e := out[g[2]]
		if g[1] == "sum" {
			e[0] = v
		} else {
			e[1] = v
		}
		out[g[2]] = e
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the %s serves none of %s", component, re)
	}
	return out, nil
}
