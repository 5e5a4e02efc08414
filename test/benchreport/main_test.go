package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportPlotsContenders(t *testing.T) {
	raw := `commit: abc1234
date: 2026-11-24
command: go test -bench . ./test/dataplane/
pkg: github.com/sealmesh/sealmesh/test/dataplane
cpu: Test CPU
BenchmarkDataPlane/veth-2 1 0 ns/op 13.1 tcp-Gb/s
BenchmarkDataPlane/sealmesh-2 1 0 ns/op 0.65 tcp-Gb/s 17.0 cpu-s/GB
BenchmarkDataPlane/veth-2 1 0 ns/op 14.2 tcp-Gb/s
BenchmarkDataPlane/sealmesh-2 1 0 ns/op 0.61 tcp-Gb/s 16.0 cpu-s/GB
BenchmarkSingle 1 5 ns/op
`
	dir := t.TempDir()
	if d := os.Getenv("BENCHREPORT_KEEP"); d != "" {
		dir = d
	}
	md := string(report(raw, filepath.Join(dir, "BENCHMARKS.md")))
	contains(t, md,
		"at commit abc1234 on 2026-11-24, Test CPU",
		"```\ngo test -bench . ./test/dataplane/\n```",
		"| test/dataplane | BenchmarkDataPlane/sealmesh | tcp-Gb/s | 0.63 | 0.61 – 0.65 | 2 |",
		"![BenchmarkDataPlane tcp-Gb/s](bench/DataPlane-tcp-Gb-s.png)",
	)
	// One contender has cpu-s/GB: nothing to compare, no plot.
	if strings.Contains(md, "cpu-s") && strings.Contains(md, "bench/DataPlane-cpu") {
		t.Error("plotted a metric only one sub-benchmark has")
	}
	if st, err := os.Stat(filepath.Join(dir, "bench", "DataPlane-tcp-Gb-s.png")); err != nil || st.Size() < 1000 {
		t.Errorf("plot not written: %v", err)
	}
}

// The goals' figures are derived from the medians: the CNI chains' ADD over
// bridge-only (a difference in sequence, a ratio ten at a time) and the
// coordinator's CPU per enrolment over the floor's.
func TestReportDerivesTheGoalsFigures(t *testing.T) {
	raw := `commit: abc1234
date: 2026-12-07
pkg: github.com/sealmesh/sealmesh/test/e2e
BenchmarkCNILatency/chain=bridge-only/parallel=1-2 1 30 ADD-p50-ms 50 ADD-p99-ms 27 plugin-bridge-ADD-p50-ms
BenchmarkCNILatency/chain=bridge-only/parallel=1-2 1 40 ADD-p50-ms 60 ADD-p99-ms 36 plugin-bridge-ADD-p50-ms
BenchmarkCNILatency/chain=bridge-only/parallel=1-2 1 35 ADD-p50-ms 70 ADD-p99-ms 32 plugin-bridge-ADD-p50-ms
BenchmarkCNILatency/chain=bridge-only/parallel=10-2 1 200 ADD-p50-ms 300 ADD-p99-ms
BenchmarkCNILatency/chain=bridge+tuning/parallel=1-2 1 50 ADD-p50-ms 75 ADD-p99-ms 33 plugin-bridge-ADD-p50-ms 12 plugin-tuning-ADD-p50-ms
BenchmarkCNILatency/chain=bridge+tuning/parallel=10-2 1 280 ADD-p50-ms 390 ADD-p99-ms
BenchmarkCNILatency/chain=bridge/parallel=1-2 1 90 ADD-p50-ms 140 ADD-p99-ms 34 plugin-bridge-ADD-p50-ms 50 plugin-sealmesh-cni-ADD-p50-ms 20 stage-total-ms 5 stage-enrol-ms 3 coordinator-record-ms 8 stage-tunnel-ms 0.5 stage-prepare-ms 2 stage-nebula-ms 1 stage-interface-ms
BenchmarkCNILatency/chain=bridge/parallel=10-2 1 500 ADD-p50-ms 600 ADD-p99-ms 80 stage-total-ms 40 stage-tunnel-ms
pkg: github.com/sealmesh/sealmesh/test/ha
BenchmarkCluster/CryptoFloor-2 1 0 ns/op 0.4 ms/enrol
BenchmarkCluster/Enrol/coordinators=1-2 1 0 ns/op 1.0 cpu-ms/enrol 2000 floor-enrol/s
BenchmarkCluster/Enrol/coordinators=3-2 1 0 ns/op 1.5 cpu-ms/enrol 2000 floor-enrol/s 2.9 cpu-floor-ratio
`
	md := string(report(raw, filepath.Join(t.TempDir(), "BENCHMARKS.md")))
	contains(t, md,
		// bridge-only's medians: 35 and 60 ms in sequence.
		"| sealmesh (bridge + sealmesh-cni) | +55.0 ms | +80.0 ms | 2.50× | 2.00× |",
		"| bridge + tuning (no sealmesh) | +15.0 ms | +15.0 ms | 1.40× | 1.30× |",
		"sealmesh's chain over bridge + tuning: +40.0 ms p50 in sequence.",
		// Each chain's ADD less its plugins' execs.
		"| bridge-only | 35.0 ms | 32.0 ms | – | 3.0 ms |",
		"| bridge+tuning | 50.0 ms | 33.0 ms | tuning 12.0 ms | 5.0 ms |",
		"| bridge | 90.0 ms | 34.0 ms | sealmesh-cni 50.0 ms (agent 20.0) | 6.0 ms |",
		// The agent's stages and their shares; a part a run lacks is "–",
		// and so is what is derived from it.
		"| enrol | 5.00 ms (25%) | – |",
		"| – the coordinator's record | 3.00 ms (15%) | – |",
		"| tunnel | 8.00 ms (40%) | 40.00 ms (50%) |",
		"| – nebula (in the tunnel process) | 2.00 ms (10%) | – |",
		"| – the rest: the call, a process's start | 4.50 ms (22%) | – |",
		"| total | 20.00 ms (100%) | 80.00 ms (100%) |",
		// The floor measured beside the run, not CryptoFloor's; the runs'
		// own ratio where there is one.
		"- one coordinator: 1 ms, 2.00× the floor's 0.5 ms",
		"- three coordinators: 1.5 ms, 2.90× the floor's 0.5 ms",
	)
}

// contains checks that the report holds each of wants.
func contains(t *testing.T, md string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}
