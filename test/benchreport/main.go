// Command benchreport runs Go benchmarks several times and writes
// docs/BENCHMARKS.md: per benchmark and metric the median and min–max over the
// runs, with the exact command that produced them (make bench).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	out := flag.String("out", "docs/BENCHMARKS.md", "file to write")
	count := flag.Int("count", 5, "runs of each benchmark")
	benchtime := flag.String("benchtime", "3x", "go test -benchtime")
	flag.Parse()
	// Each argument is a package pattern, optionally with its own benchtime
	// ("./attest/=2000x"): cheap benchmarks need many iterations, ones with a
	// costly setup few.
	pkgs := flag.Args()
	if len(pkgs) == 0 {
		pkgs = []string{"./..."}
	}
	var buf bytes.Buffer
	var cmdlines []string
	for _, p := range pkgs {
		pkg, bt, ok := strings.Cut(p, "=")
		if !ok {
			bt = *benchtime
		}
		args := []string{"test", "-run", "^$", "-bench", ".", "-benchtime", bt, "-count", strconv.Itoa(*count), pkg}
		cmdline := "go " + strings.Join(args, " ")
		cmdlines = append(cmdlines, cmdline)
		fmt.Fprintln(os.Stderr, "running:", cmdline)
		cmd := exec.Command("go", args...)
		cmd.Stdout = &buf
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "benchreport: %v\n%s", err, buf.String())
			os.Exit(1)
		}
	}
	cmdline := strings.Join(cmdlines, "\n")
	if err := os.WriteFile(*out, report(buf.String(), cmdline), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "wrote", *out)
}

var line = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

type key struct{ pkg, name, unit string }

func report(raw, cmdline string) []byte {
	samples := map[key][]float64{}
	var order []key
	pkg, cpu := "", ""
	sc := bufio.NewScanner(strings.NewReader(raw))
	for sc.Scan() {
		l := sc.Text()
		if p, ok := strings.CutPrefix(l, "pkg: "); ok {
			pkg = p
		}
		if c, ok := strings.CutPrefix(l, "cpu: "); ok {
			cpu = strings.TrimSpace(c)
		}
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		f := strings.Fields(m[4])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			k := key{pkg, m[1], f[i+1]}
			if _, seen := samples[k]; !seen {
				order = append(order, k)
			}
			samples[k] = append(samples[k], v)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` on %s, %s, %d cores (%s/%s). Each figure is the median of\nthe runs, with min–max; these machines are shared and noisy, so compare figures of one run.\n\n",
		time.Now().UTC().Format("2006-01-02"), cpu, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "Commands (`make bench` runs them):\n\n```\n%s\n```\n\n", cmdline)
	fmt.Fprintf(&b, "| package | benchmark | metric | median | min – max | runs |\n|---|---|---|---|---|---|\n")
	for _, k := range order {
		v := slices.Sorted(slices.Values(samples[k]))
		if k.unit == "ns/op" && v[len(v)-1] == 0 {
			continue // a measurement benchmark, not a timing
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s – %s | %d |\n", strings.TrimPrefix(k.pkg, "github.com/sealmesh/sealmesh/"),
			k.name, k.unit, human(median(v), k.unit), human(v[0], k.unit), human(v[len(v)-1], k.unit), len(v))
	}
	b.WriteString(notes)
	return b.Bytes()
}

func median(v []float64) float64 {
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func human(v float64, unit string) string {
	if unit == "ns/op" {
		return time.Duration(v).Round(time.Microsecond).String()
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

const notes = `
## What the figures mean

- **test/e2e BenchmarkPodMemory**: one node of the real mesh (root, network
  namespaces); after 10, 50 and 100 idle pods, the tunnel processes running the pods'
  Nebula instances (children of the agent): resident memory (RSS), proportional memory
  (PSS: shared pages of the binary divided among the processes sharing them, the fair
  per-pod cost) and open file descriptors, per pod. *per-process=1* is one
  ` + "`sealmesh-tunnel`" + ` per pod; *per-process=16* is the agent's default, sixteen
  pods' instances per process. Issue 6's goal is below 8 MB per pod: one process per pod
  misses it (each process pays its Go runtime and 6.4 MB of lookup tables a dependency
  of Nebula, gopacket, fills at init), sharing meets it. What sharing costs and how the
  instances are kept in their pods' namespaces: docs/architecture.md, "Several pods'
  Nebula in one tunnel process". What would move it: more pods per process (the
  per-process part shrinks toward the instance's own ≈1.5 MiB) at the price of a larger
  crash radius.

- **test/e2e BenchmarkCNILatency**: CNI ADD and DEL of the whole chain through libcni on
  one node, for 100 pods in sequence and 100 in parallel batches of 10 (each ADD includes
  making the pod's netns): the reference bridge + host-local alone, and with sealmesh-cni
  chained (per pod: a key pair, simulated SNP evidence, enrolment over attested TLS with a
  lease claimed in the store, a Nebula process started in the pod's netns). The
  difference is sealmesh's cost per pod; in parallel batches it shares two cores with the
  coordinator and the pods' Nebula processes.

- **attest BenchmarkVerify/snp, /tdx, BenchmarkVerifySimulated**: one evidence
  verification (certificate chain, report or quote signature, report data) of the real
  Milan SNP report with its VCEK, the real TDX quote, and simulated SNP evidence. The
  inverse of ns/op is verifications per second on one core.

- **ca/coordinator BenchmarkRestartToReady**: a coordinator restarts over a store with n
  transitions and n issued certificates; one op is ` + "`New` + `Unlock`" + `: unseal the seed, verify
  every transition's hash link and owner signature and the latest pointer's signature,
  load every lease. ns/op is restart-to-ready time; heap-MiB is the heap the loaded
  coordinator holds. The store is on tmpfs (/dev/shm) where there is one, so the figure is
  verification and parsing, not disk.

- **test/ha BenchmarkCluster**: three coordinator processes, one per network namespace,
  over one real etcd, the agents' enrolments made from a hub namespace; everything
  (clients' simulated evidence, attested TLS both ends, three coordinators, etcd) shares
  this machine's two cores. *PeerRecovery*: a coordinator with no state of its own, from
  its process start to ` + "`/readyz`" + ` through gossip join and peer recovery (attested TLS in
  both directions, the store's history verified with the received seed). *Enrol*: 24
  concurrent agents for 3 s against one coordinator and against three (each agent
  starting at a different one): enrolments per second and the latency of one enrolment
  (nonce, evidence, verification, lease claimed by compare-and-swap in etcd, certificate).
  The machine's two cores are the limit, so three coordinators add availability here, not
  throughput; what three coordinators must not cost is contention, which is why cluster
  members start their address searches at points of their own. *ManifestToAll*: from the
  answer to a manifest update to every member serving the new generation (etcd watch;
  gossip hints as a second path).
`
