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
	for _, want := range []string{
		"at commit abc1234 on 2026-11-24, Test CPU",
		"```\ngo test -bench . ./test/dataplane/\n```",
		"| test/dataplane | BenchmarkDataPlane/sealmesh | tcp-Gb/s | 0.63 | 0.61 – 0.65 | 2 |",
		"![BenchmarkDataPlane tcp-Gb/s](bench/DataPlane-tcp-Gb-s.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	// One contender has cpu-s/GB: nothing to compare, no plot.
	if strings.Contains(md, "cpu-s") && strings.Contains(md, "bench/DataPlane-cpu") {
		t.Error("plotted a metric only one sub-benchmark has")
	}
	if st, err := os.Stat(filepath.Join(dir, "bench", "DataPlane-tcp-Gb-s.png")); err != nil || st.Size() < 1000 {
		t.Errorf("plot not written: %v", err)
	}
}
