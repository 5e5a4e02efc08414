package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/node"
	"github.com/sealmesh/sealmesh/internal/testenv"
	"github.com/sealmesh/sealmesh/test/mesh"
	"github.com/sealmesh/sealmesh/test/tools"
)

// BenchmarkPodMemory measures what each pod costs on a node: the tunnel
// processes running the pods' Nebula instances (children of the agent), their
// resident and proportional memory, their file descriptors and their CPU
// while the pods are idle, at 10, 50 and 100 pods on one node; with one pod
// per process (per-process=1) and with the agent's default sharing.
func BenchmarkPodMemory(b *testing.B) {
	testenv.RequireRoot(b)
	for _, per := range []int{1, node.DefaultPodsPerProcess} {
		b.Run(fmt.Sprintf("per-process=%d", per), func(b *testing.B) { podMemory(b, per) })
	}
}

func podMemory(b *testing.B, per int) {
	ctx := context.Background()
	prefix := fmt.Sprintf("smbench%d", os.Getpid()%100000)
	m, err := mesh.Up(ctx, mesh.Options{BinDir: binDir, WorkDir: b.TempDir(), Prefix: prefix, PodsPerProcess: per})
	defer func() {
		if err := m.Close(context.Background()); err != nil {
			b.Errorf("cleanup: %v", err)
		}
	}()
	if err != nil {
		b.Fatal(err)
	}
	pods := 0
	for _, n := range []int{10, 50, 100} {
		for ; pods < n; pods++ {
			if _, err := m.AddPod(ctx, fmt.Sprintf("p%d", pods)); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("pods=%d", n), func(b *testing.B) {
			var rss, pss, fds float64
			// With every process full the agent keeps a spare
			// without pods, started in the background: the node
			// pays for it, so it is counted once it runs.
			want := (n + per - 1) / per
			if n%per == 0 {
				want++
			}
			children := childrenOf(m.AgentPID)
			for deadline := time.Now().Add(10 * time.Second); len(children) != want && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				children = childrenOf(m.AgentPID)
			}
			if len(children) != want {
				b.Fatalf("%d tunnel processes for %d pods, want %d", len(children), n, want)
			}
			// Idle, each instance has timers: Nebula's lighthouse
			// update every 10 s (half of them fall in the window),
			// its handshake and connection managers' ticks.
			cpu0 := tools.ThreadCPUSeconds(children)
			time.Sleep(idleWindow)
			idle := tools.ThreadCPUSeconds(children) - cpu0
			for _, pid := range children {
				rss += kib(pid, "status", "VmRSS:")
				pss += kib(pid, "smaps_rollup", "Pss:")
				ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
				fds += float64(len(ents))
			}
			// A measurement, not a timing: ns/op is reported as 0.
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(rss/1024/float64(n), "RSS-MiB/pod")
			b.ReportMetric(pss/1024/float64(n), "PSS-MiB/pod")
			b.ReportMetric(fds/float64(n), "fds/pod")
			b.ReportMetric(1e6*idle/idleWindow.Seconds()/float64(n), "idle-cpu-µs/s/pod")
		})
	}
}

// idleWindow is how long BenchmarkPodMemory measures idle pods' CPU.
const idleWindow = 5 * time.Second

func childrenOf(ppid int) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			out = append(out, pid)
		}
	}
	return out
}

func kib(pid int, file, field string) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field) {
			v, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return v
		}
	}
	return 0
}
