// Command benchreport runs Go benchmarks several times and writes
// docs/BENCHMARKS.md: per benchmark and metric the median and min–max over the
// runs, with the exact command that produced them (make bench). The runs'
// output is kept beside the plots (docs/bench/raw.txt, as benchstat reads
// it); -from writes the report again from such a file without running
// anything, when only the notes changed.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	from := flag.String("from", "", "write the report from this raw output (docs/bench/raw.txt) instead of running")
	flag.Parse()
	raw := filepath.Join(filepath.Dir(*out), "bench", "raw.txt")
	var buf bytes.Buffer
	if *from != "" {
		if flag.NArg() > 0 {
			fail(fmt.Errorf("-from writes the report from a file; it runs no packages (%s)", strings.Join(flag.Args(), " ")))
		}
		b, err := os.ReadFile(*from)
		if err != nil {
			fail(err)
		}
		buf.Write(b)
	} else {
		run(&buf, *count, *benchtime, flag.Args())
		if err := os.MkdirAll(filepath.Dir(raw), 0o755); err != nil {
			fail(err)
		}
		if err := os.WriteFile(raw, buf.Bytes(), 0o644); err != nil {
			fail(err)
		}
	}
	if err := os.WriteFile(*out, report(buf.String(), *out), 0o644); err != nil {
		fail(err)
	}
	fmt.Fprintln(os.Stderr, "wrote", *out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "benchreport:", err)
	os.Exit(1)
}

// run runs the benchmarks of pkgs into buf, each package's output after the
// command that made it, all after the commit and the date: benchstat reads
// these "key: value" lines as the results' configuration.
func run(buf *bytes.Buffer, count int, benchtime string, pkgs []string) {
	// Each argument is a package pattern, optionally with its own benchtime
	// ("./attest/=2000x"): cheap benchmarks need many iterations, ones with a
	// costly setup few.
	if len(pkgs) == 0 {
		pkgs = []string{"./..."}
	}
	commit, _ := exec.Command("git", "describe", "--always", "--dirty").Output()
	fmt.Fprintf(buf, "commit: %s\ndate: %s\n", strings.TrimSpace(string(commit)), time.Now().UTC().Format("2006-01-02"))
	for _, p := range pkgs {
		pkg, bt, ok := strings.Cut(p, "=")
		if !ok {
			bt = benchtime
		}
		args := []string{"test", "-run", "^$", "-bench", ".", "-benchtime", bt, "-count", strconv.Itoa(count), pkg}
		cmdline := "go " + strings.Join(args, " ")
		fmt.Fprintln(os.Stderr, "running:", cmdline)
		fmt.Fprintf(buf, "command: %s\n", cmdline)
		cmd := exec.Command("go", args...)
		cmd.Stdout = buf
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fail(fmt.Errorf("%v\n%s", err, buf.String()))
		}
	}
}

var line = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(.*)$`)

type key struct{ pkg, name, unit string }

// report is the markdown for raw, the output run wrote; its plots go in the
// bench directory beside out.
func report(raw, out string) []byte {
	samples := map[key][]float64{}
	var order []key
	pkg, cpu, commit, date := "", "", "", ""
	var cmdlines []string
	sc := bufio.NewScanner(strings.NewReader(raw))
	for sc.Scan() {
		l := sc.Text()
		if p, ok := strings.CutPrefix(l, "pkg: "); ok {
			pkg = p
		}
		if c, ok := strings.CutPrefix(l, "commit: "); ok {
			commit = c
		}
		if d, ok := strings.CutPrefix(l, "date: "); ok {
			date = d
		}
		if c, ok := strings.CutPrefix(l, "command: "); ok {
			cmdlines = append(cmdlines, c)
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
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` at commit %s on %s, %s, %d cores (%s/%s). Each figure is the\nmedian of the runs, with min–max; these machines are shared and noisy, so compare figures of one run.\nThe runs' output is in [bench/raw.txt](bench/raw.txt) (`benchstat` reads it).\n\n",
		commit, date, cpu, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "Commands (`make bench` runs them):\n\n```\n%s\n```\n\n", strings.Join(cmdlines, "\n"))
	fmt.Fprintf(&b, "| package | benchmark | metric | median | min – max | runs |\n|---|---|---|---|---|---|\n")
	for _, k := range order {
		v := slices.Sorted(slices.Values(samples[k]))
		if k.unit == "ns/op" && v[len(v)-1] == 0 {
			continue // a measurement benchmark, not a timing
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s – %s | %d |\n", strings.TrimPrefix(k.pkg, "github.com/sealmesh/sealmesh/"),
			k.name, k.unit, human(median(v), k.unit), human(v[0], k.unit), human(v[len(v)-1], k.unit), len(v))
	}
	b.WriteString(derived(samples))
	b.WriteString(plots(samples, order, filepath.Join(filepath.Dir(out), "bench")))
	b.WriteString(notes)
	return b.Bytes()
}

// plots draws a bar chart for every metric of a benchmark with several
// sub-benchmarks whose names differ in their last part (contenders, sizes),
// and returns the Markdown that shows them.
func plots(samples map[key][]float64, order []key, dir string) string {
	type group struct{ pkg, bench, unit string }
	subs := map[group][]string{}
	values := map[group]map[string][]float64{}
	var groups []group
	for _, k := range order {
		i := strings.LastIndex(k.name, "/")
		if i < 0 || k.unit == "ns/op" {
			continue
		}
		g := group{k.pkg, k.name[:i], k.unit}
		if _, ok := values[g]; !ok {
			groups = append(groups, g)
			values[g] = map[string][]float64{}
		}
		subs[g] = append(subs[g], k.name[i+1:])
		values[g][k.name[i+1:]] = samples[k]
	}
	var b strings.Builder
	for _, g := range groups {
		if len(subs[g]) < 2 {
			continue
		}
		name, err := bars(dir, g.bench, g.unit, subs[g], values[g])
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\n## Plots\n\n")
		}
		fmt.Fprintf(&b, "![%s %s](bench/%s)\n\n", g.bench, g.unit, name)
	}
	return b.String()
}

func median(v []float64) float64 {
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// derived states, from the medians of the table, the figures issue 29's
// goals are set in: the CNI ADD's cost over the bridge-only chain (sealmesh's
// chain, and bridge+tuning, what any chained plugin costs here), and the
// coordinator's CPU per enrolment over the crypto floor's. A figure whose
// benchmarks did not run is left out.
func derived(samples map[key][]float64) string {
	const e2e, ha = "github.com/sealmesh/sealmesh/test/e2e", "github.com/sealmesh/sealmesh/test/ha"
	med := func(pkg, name, unit string) (float64, bool) {
		v, ok := samples[key{pkg, name, unit}]
		if !ok || len(v) == 0 {
			return 0, false
		}
		return median(slices.Sorted(slices.Values(v))), true
	}
	cni := func(chain string, parallel int, unit string) (float64, bool) {
		return med(e2e, fmt.Sprintf("BenchmarkCNILatency/chain=%s/parallel=%d", chain, parallel), unit)
	}
	var b strings.Builder
	var rows []string
	for _, c := range []struct{ chain, label string }{{"bridge", "sealmesh (bridge + sealmesh-cni)"}, {"bridge+tuning", "bridge + tuning (no sealmesh)"}} {
		cells := []string{c.label}
		for _, m := range []struct {
			parallel int
			unit     string
		}{{1, "ADD-p50-ms"}, {1, "ADD-p99-ms"}, {10, "ADD-p50-ms"}, {10, "ADD-p99-ms"}} {
			base, ok1 := cni("bridge-only", m.parallel, m.unit)
			v, ok2 := cni(c.chain, m.parallel, m.unit)
			switch {
			case !ok1 || !ok2:
				cells = append(cells, "–")
			case m.parallel == 1:
				cells = append(cells, fmt.Sprintf("%+.1f ms", v-base))
			default:
				cells = append(cells, fmt.Sprintf("%.2f×", v/base))
			}
		}
		if slices.ContainsFunc(cells[1:], func(c string) bool { return c != "–" }) {
			rows = append(rows, "| "+strings.Join(cells, " | ")+" |")
		}
	}
	if len(rows) > 0 {
		b.WriteString("\n## CNI ADD over the bridge-only chain\n\n")
		b.WriteString("From the medians above (BenchmarkCNILatency): in sequence, the difference in ms; ten at a\ntime, the ratio. Issue 29's goals for sealmesh: at most +10 ms p50 and +30 ms p99 in\nsequence, at most 1.5× p50 ten at a time. *bridge + tuning* is what the least chained\nplugin costs in the same run.\n\n")
		b.WriteString("| chain | sequence p50 | sequence p99 | ten at a time p50 | ten at a time p99 |\n|---|---|---|---|---|\n")
		b.WriteString(strings.Join(rows, "\n") + "\n")
		s, ok1 := cni("bridge", 1, "ADD-p50-ms")
		t, ok2 := cni("bridge+tuning", 1, "ADD-p50-ms")
		if ok1 && ok2 {
			fmt.Fprintf(&b, "\nsealmesh's chain over bridge + tuning: %+.1f ms p50 in sequence.\n", s-t)
		}
	}
	b.WriteString(byPlugin(cni))
	b.WriteString(byStage(cni))
	var lines []string
	for _, c := range []struct {
		n     int
		label string
	}{{1, "one coordinator"}, {3, "three coordinators"}} {
		name := fmt.Sprintf("BenchmarkCluster/Enrol/coordinators=%d", c.n)
		cpu, ok1 := med(ha, name, "cpu-ms/enrol")
		rate, ok2 := med(ha, name, "floor-enrol/s")
		if !ok1 || !ok2 {
			continue
		}
		// The median of the runs' own ratios where the benchmark reports
		// them; from the medians of its two sides before it did.
		ratio, ok := med(ha, name, "cpu-floor-ratio")
		if !ok {
			ratio = cpu * rate / 1000
		}
		lines = append(lines, fmt.Sprintf("- %s: %.3g ms, %.2f× the floor's %.3g ms", c.label, cpu, ratio, 1000/rate))
	}
	if len(lines) > 0 {
		b.WriteString("\n## Coordinator CPU per enrolment over the crypto floor\n\n")
		b.WriteString("From the medians above (BenchmarkCluster/Enrol): the coordinators' CPU per enrolment at\nthe peak against the floor's (evidence verification and certificate signing alone, on one\ncore), measured on each side of the same run (floor-enrol/s). Issue 29's goal: at most\n1.3× with one coordinator.\n\n")
		b.WriteString(strings.Join(lines, "\n") + "\n")
	}
	return b.String()
}

// byPlugin splits each chain's ADD in sequence by plugin: each plugin's
// exec, from its start to its exit, as libcni ran it; what is left of the
// ADD is libcni's own work and the pod's netns made. For sealmesh-cni, the
// agent's share is its ADD stages' total.
func byPlugin(cni func(chain string, parallel int, unit string) (float64, bool)) string {
	var rows []string
	for _, c := range []struct{ chain, second string }{{"bridge-only", ""}, {"bridge+tuning", "tuning"}, {"bridge", "sealmesh-cni"}} {
		add, ok1 := cni(c.chain, 1, "ADD-p50-ms")
		bridge, ok2 := cni(c.chain, 1, "plugin-bridge-ADD-p50-ms")
		if !ok1 || !ok2 {
			continue
		}
		second, rest := "–", add-bridge
		if c.second != "" {
			v, ok := cni(c.chain, 1, "plugin-"+c.second+"-ADD-p50-ms")
			if !ok {
				continue
			}
			second, rest = fmt.Sprintf("%s %.1f ms", c.second, v), rest-v
			if agent, ok := cni(c.chain, 1, "stage-total-ms"); ok {
				second += fmt.Sprintf(" (agent %.1f)", agent)
			}
		}
		rows = append(rows, fmt.Sprintf("| %s | %.1f ms | %.1f ms | %s | %.1f ms |", c.chain, add, bridge, second, rest))
	}
	if len(rows) == 0 {
		return ""
	}
	return "\n## CNI ADD by plugin\n\n" +
		"From the medians above (BenchmarkCNILatency, in sequence, p50 of each): each plugin's exec\nfrom its start to its exit as libcni ran it (*plugin-\\*-ADD-p50-ms*), and what is left of\nthe ADD: libcni's own work and the pod's netns made. The medians of parts need not add\nup to the median of the whole.\n\n" +
		"| chain | ADD | bridge (with host-local) | chained plugin | rest |\n|---|---|---|---|---|\n" +
		strings.Join(rows, "\n") + "\n"
}

// byStage splits the agent's ADD (sealmesh's chain) by stage, in sequence
// and ten at a time: each stage's mean over the run and its share of the
// total. mtu runs beside the enrolment; prepare, nebula and interface are
// parts of tunnel, timed in the tunnel process, and what is left of tunnel
// is the call to it (and a process's start, for a pod that waited for one).
func byStage(cni func(chain string, parallel int, unit string) (float64, bool)) string {
	total1, ok1 := cni("bridge", 1, "stage-total-ms")
	total10, ok10 := cni("bridge", 10, "stage-total-ms")
	if !ok1 || !ok10 {
		return ""
	}
	cell := func(total, v float64, ok bool) string {
		if !ok {
			return "–"
		}
		return fmt.Sprintf("%.2f ms (%.0f%%)", v, 100*v/total)
	}
	// metric is one of sealmesh's chain's figures, by how many ran at once.
	metric := func(unit string) func(parallel int) (float64, bool) {
		return func(p int) (float64, bool) { return cni("bridge", p, unit) }
	}
	named := func(stage string) func(int) (float64, bool) { return metric("stage-" + stage + "-ms") }
	var rows []string
	row := func(label string, get func(parallel int) (float64, bool)) {
		v1, ok1 := get(1)
		v10, ok10 := get(10)
		if ok1 || ok10 {
			rows = append(rows, fmt.Sprintf("| %s | %s | %s |", label, cell(total1, v1, ok1), cell(total10, v10, ok10)))
		}
	}
	for _, st := range []struct{ name, label string }{
		{"identity", "identity"}, {"mtu", "mtu (beside the enrolment)"}, {"key", "key"}, {"nonce", "nonce"},
		{"evidence", "evidence"}, {"enrol", "enrol"},
	} {
		row(st.label, named(st.name))
	}
	row("– the coordinator's verify", metric("coordinator-verify-ms"))
	row("– the coordinator's record", metric("coordinator-record-ms"))
	row("tunnel", named("tunnel"))
	parts := []string{"prepare", "nebula", "interface"}
	for _, part := range parts {
		row("– "+part+" (in the tunnel process)", named(part))
	}
	row("– the rest: the call, a process's start", func(p int) (float64, bool) {
		rest, ok := named("tunnel")(p)
		for _, part := range parts {
			v, have := named(part)(p)
			rest, ok = rest-v, ok && have
		}
		return rest, ok
	})
	row("record", named("record"))
	row("total", named("total"))
	return "\n## The agent's ADD by stage\n\n" +
		"From the medians above (BenchmarkCNILatency, sealmesh's chain): each stage's mean over the\nrun (*stage-\\*-ms*) and its share of the total. Stages marked – are parts of the one above\nthem; *mtu* runs beside the enrolment and is not part of the total.\n\n" +
		"| stage | in sequence | ten at a time |\n|---|---|---|\n" +
		strings.Join(rows, "\n") + "\n"
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
  per-pod cost), open file descriptors and CPU while the pods are idle
  (*idle-cpu-µs/s/pod*: the processes' threads' time on CPU over 5 s, from their
  schedstat), per pod. *per-process=1* is one
  ` + "`sealmesh-tunnel`" + ` per pod; *per-process=16* is the agent's default, sixteen
  pods' instances per process. Issue 6's goal is below 8 MB per pod: sharing meets it,
  and since the gopacket stand-in (third_party/gopacket, issue 29) one process per pod
  does too: each process used to pay, besides its Go runtime, about 7 MB of lookup
  tables gopacket's layers package fills at init, for five constants Nebula takes from
  it (about 12 MiB PSS per pod at one per process and 1.9 at sixteen before, about 4 and
  1.3 after). Since issue 29's last commits each tunnel process runs in an empty
  network namespace of its own: Nebula's lighthouse update, once at each instance's
  start and every 10 s, lists the interfaces of its thread's namespace, which in the
  node's was a netlink dump of every pod's veth, and its garbage kept the heaps large
  (old and new trees side by side, two runs each, sixteen per process at 100 pods:
  1.50 and 1.59 MiB PSS per pod before, 0.79 and 0.79 after). Idle, a pod costs about
  1 ms of CPU a second at sixteen per process (3 ms at one per process): Go's scheduler
  waking for each instance's timers (Nebula's handshake manager ticks every 100 ms,
  its connection manager every 500 ms); not changed yet. What sharing costs and how the
  instances are kept in their pods' namespaces: docs/architecture.md, "Several pods'
  Nebula in one tunnel process". What would move it: more pods per process (the
  per-process part shrinks toward the instance's own ≈1.5 MiB) at the price of a larger
  crash radius.

- **test/dataplane BenchmarkDataPlane**: two pods of a real mesh, each in its network
  namespace behind the node's bridge (veth pairs, MTU 1500), pod-a → pod-b, the
  contenders one after the other in each run (interleaved, so a noisy minute hits all;
  each run starts at the next contender, so none is always first): *veth* the raw
  underlay (the physical limit here); *sealmesh* the pods' Nebula instances as the agent
  configures them (MTU from the pod's link: 1420; 10 MiB socket buffers; a TUN transmit
  queue of 5000 packets; one tunnel process per pod, as on two nodes), on sealmesh's own
  TUN device with the kernel's offloads (agent/tundev); *nebula-equal* the
  stock ` + "`nebula`" + ` binary built from the same module version (v1.11.1) with the
  configuration sealmesh renders (same MTU, buffers, queue, cipher, firewall);
  *nebula-default* the stock binary with Nebula's defaults (MTU 1300, kernel-default
  buffers, queue 500); *nebula-equal-mtu1300*, *-kernel-buffers*, *-txq500*: sealmesh's
  configuration with one of its settings put back to Nebula's default, and
  *-routines2*: with two routines (reader pairs) instead of one, the share of each
  setting; *wireguard-go* (its default MTU 1420). tcp-Gb/s: one iperf3 TCP stream for
  10 s, what the receiver got; tcp-retrans: the sender's retransmissions;
  udp-sock-drops and tun-drops: where packets were lost during the TCP run, both pods
  summed (datagrams a full UDP socket refused, RcvbufErrors; packets the kernel dropped
  at the tunnel's interface because the tunnel had not read its queue, TX dropped);
  udp-Gb/s: iperf3 UDP at full rate with 1200-byte datagrams for 5 s, what arrived;
  rtt-ms: median ICMP round trip; cpu-s/GB: user+system seconds of both ends' tunnel
  processes per GB the TCP receiver got; rss-idle/load-MiB: both ends' resident memory
  before and at the peak of the TCP run. *The settings, per cause* (ratios of figures in one run; the
  plots show each): the socket buffers are most of sealmesh's gain over Nebula's
  defaults. At the kernel's default buffer the receiver's UDP socket overflows under one
  TCP stream, and every retransmission is such a drop; with sealmesh's buffers the rate
  is 1.5–2× as high (1.6–2.0× in four runs). With the buffers raised the loss moves
  to the sender's TUN queue: at 500 packets it overflows (TCP small queues allow one flow
  about 1 MiB, some 700 packets, below the socket), and every retransmission of
  *-txq500* is a drop there, about 5% of the packets; with 5000, none. What the queue,
  the MTU and the routines are worth in rate is within the noise of these machines: in
  four runs (pair medians, ratios of sealmesh's configuration to the variant) the queue
  1.00–1.35×, MTU 1420 against 1300 (9% more per packet) 0.92–1.28×, one routine
  against two 0.9–1.33×; on a busy host the sender resends what the tunnel could not
  have carried anyway. Two routines do not help one stream by design: the kernel hashes
  a flow to one TUN queue and one socket, so the second reader pair carries nothing of
  it and only takes a share of two cores; sealmesh keeps one. *Limits:* Nebula moves
  one packet per system call on UDP (decrypt, encrypt and sendmsg per packet; receives
  batched with recvmmsg) and runs its inside and outside paths on one goroutine each.
  sealmesh's device takes the TUN side's per-packet system calls away (BenchmarkDevice
  below: about 50 packets per read, about 10 per write on one stream) and with them the
  kernel's per-packet TCP work on both pods, which is its gain over *nebula-equal* in
  rate and CPU per GB. *The gap to wireguard-go* that remains is per cause: UDP GSO/GRO
  (wireguard-go sends and receives batches of datagrams per system call; Nebula v1.11.1
  sends one by one, in socket code that ` + "`nebula.Main`" + ` does not let sealmesh replace),
  and wireguard-go's parallel crypto pipeline across cores (Nebula encrypts a stream on
  one goroutine). The first is most of it: in a perf profile of sealmesh's TCP stream
  (` + "`perf record -a -g -F 1999`" + ` for 7 s of BenchmarkDataPlane/sealmesh at 9e67d4b), the
  sending pod's tunnel process spent 64% of its samples under Nebula's ` + "`WriteTo`" + `, one
  ` + "`sendto`" + ` per datagram through the kernel's UDP, IP, bridge and veth paths (a quarter of
  that in the hypervisor's ` + "`pvm_irq_enable`" + `: this host is a paravirtualised guest), 6% in
  the device's reads and under 5% in encryption; the receiving one 45% under
  ` + "`ListenOut`" + ` (recvmmsg and decryption) and 28% in the device's writes. Nebula v1.11.2
  and v1.12.0 batch their UDP side, but they need github.com/DefinedNet/netlink
  v1.3.2-dn.1, github.com/DefinedNet/dnsconfig and a gvisor.dev/gvisor of 2026-10-14,
  which the Go module proxy refuses here (403, tried again on 2026-12-08; v1.12.0 also
  needs Go 1.27.3). The offloaded path costs a pod memory only once it carries a burst
  (its buffers, and wireguard-go's coalescing tables of about 2 MB of heap): idle pods
  pay nothing (BenchmarkPodMemory); a pod keeps them while it carries bulk traffic
  (rss-load) and gives them back 5 s after its last packet. The splitter is on only
  while reads carry TCP: with it, the kernel leaves each packet's checksum to user
  space, which for a UDP flood costs more than it saves.
  wireguard-go's memory under load is its pools of 64 KiB buffers. UDP at full rate
  measures how much a sender that does
  not slow down loses: wireguard-go drops more of a flood than Nebula. Until c307e50
  sealmesh lost about a fifth of a flood started right after a TCP run: the file
  wireguard-go's device reads was registered with Go's network poller, and every packet
  queued on the TUN woke an idle poller thread (474,000 epoll_pwait in the sender's
  tunnel process in 5 s); experiments that isolated it are in that commit.

- **agent/tundev BenchmarkDevice**: the device alone, without Nebula or crypto: two
  devices in two namespaces joined in user space (what one reads, the other writes, on
  one goroutine per direction, as Nebula), one TCP stream of 256 MiB written in 1 MiB
  writes, with each half of the offloads alone, both and neither: Gb/s, and how many
  packets each system call carried (packets/read: the kernel's super-packets split;
  packets/write: segments coalesced into one GSO write). Each half's share of the
  device's gain is the ratio of its row to *plain*.

- **agent/tundev BenchmarkDeviceRTT**: a lone packet's round trip (a UDP echo, one at a
  time, 1 ms apart, 1000 per pair) through three such pairs taking turns, so that the
  machine's drift falls on all three alike: *plain* (no virtio header), *idle* (offloads
  asked for, the offloaded path dropped after a bulk transfer) and *offloaded* (the path
  a bulk transfer made, which a ping takes for the seconds after it). Until the commit
  that added this benchmark, a lone packet on the offloaded path went through
  wireguard-go's Write, which looks for flows to coalesce even in a batch of one:
  *offloaded* was 17 us (11%) slower than *idle* at the median of six runs (+14 to +34),
  which showed in BenchmarkDataPlane's RTT right after its UDP flood (0.78 against stock
  Nebula's 0.65 ms, four runs each). Lone packets are now written on the plain path:
  +4.5 us at the median (-7 to +18).

- **test/e2e BenchmarkCNILatency**: CNI ADD and DEL of the whole chain through libcni on
  one node, for 100 pods in sequence and 100 in parallel batches of 10 (each ADD includes
  making the pod's netns; after each DEL, untimed, the netns is removed, as a runtime
  does: until 12bccd2 they were kept until the mesh closed, and over make bench's five
  rounds of each chain about 2000 piled up before sealmesh's chain, the last, ran;
  every plugin's exec slowed with them, bridge's from 28–33 ms in the first chain's
  rounds to 59–70 in sealmesh's, so sealmesh's overhead in earlier runs is overstated,
  by about half at 0fefe2b): the reference bridge + host-local alone, and with sealmesh-cni
  chained (per pod: a key pair, simulated SNP evidence, enrolment over attested TLS with a
  lease recorded in the store, a Nebula process started in the pod's netns), and with
  the reference tuning plugin, tuning nothing, chained in sealmesh-cni's place
  (*bridge+tuning*). The difference between the first two is sealmesh's cost per pod; in
  parallel batches it shares two cores with the coordinator and the pods' Nebula
  processes. *bridge+tuning* is the least any chained plugin adds: a Go plugin's exec,
  its configuration and the previous result parsed, the pod's netns entered, the result
  passed on. On a host whose process starts are slow it is most of what a chained plugin
  costs: on the Turin-class VM (a static Go hello-world costs 4.2–4.6 ms of CPU there) it
  added 21.9 ms to the sequence's ADD p50 and took ten at a time to 1.52× in make bench
  at a3828d4, 20.6 ms and 1.44× at d686d06 (the tuning process about 10 ms from exec to
  exit, bridge about 4 ms slower beside it, by ` + "`perf record -e sched:sched_process_exec,sched:sched_process_exit`" + `):
  twice issue 29's goal for sealmesh's whole overhead in sequence (10 ms), which no
  chained plugin meets on that host, and at the edge of its goal ten at a time (1.5×).
  sealmesh's cost over that floor is in the section *CNI ADD over the bridge-only chain*
  above, and each plugin's share of the ADD in *CNI ADD by plugin*
  (*plugin-\*-ADD-p50-ms*: each plugin's exec from its start to its exit, as libcni
  ran it, p50 over the run; bridge's includes the host-local it runs). *stage-\*-ms* are the agent's own ADD
  stages (its sealmesh_agent_add_stage_seconds over the run): *mtu* (the pod link's MTU
  read in its netns; from 8ef8959 on, while the enrolment is under way, so that it no
  longer adds to *total*), *key*, *nonce*, *evidence*, *enrol* (the round trip to the
  coordinator: verification, signing, the lease's durable write), *tunnel* (the Nebula
  instance started in a tunnel process: its TUN device made and configured; the call
  included), with three of its parts as the tunnel process timed them (runs before they
  were added lack them): *prepare* (the pod's netns and the instance's log opened, its
  underlay addresses read, Nebula's configuration loaded), *nebula* (nebula.Main: the
  certificate, firewall and lighthouse set up, the TUN device and the UDP socket made)
  and *interface* (Nebula's Start: the interface's MTU, addresses and link up), *record*
  (the pod's record written; without fsync since issue 29: it outlives the agent, not
  the node) and *total*. *coordinator-\*-ms* are the coordinator's side of *enrol*
  (its sealmesh_coordinator_enrolment_stage_seconds and _enrolment_seconds over the run):
  *verify* (the evidence and the manifest's policy), *record* (an address chosen, the
  certificate signed, the lease written: the file store's two records, each written,
  fsynced, renamed and its directory fsynced) and *enrolment*, the whole answer; *enrol*
  less *coordinator-enrolment* is the attested TLS round trip and the agent's own
  handling. What *total* leaves out of sealmesh-cni's exec is the plugin's own
  process: its start, its configuration and result, its call to the agent. Until
  0fefe2b the plugin called the agent through net/http, which linked TLS and HTTP/2
  into it (209 packages initialised before main, against 105 since its client speaks
  HTTP/1.0 itself): ` + "`perf stat -r 60`" + ` of ` + "`CNI_COMMAND=VERSION`" + ` 9.3–9.6 → 5.9–7.0 ms of CPU
  on the Turin-class VM (tuning 8.3–9.6), and the exec less the agent's stages
  16.1–20.0 → 12.4–15.1 ms (old and new trees alternating, three runs each). The benchmarks run the binaries as the image ships them, static
  (without cgo), as they did not until issue 29's last commits: built with cgo, the
  plugin loaded libc at every exec;
  ` + "`perf stat -r 80`" + ` of an ADD to an absent agent 14.1 → 10.3 ms of CPU,
  side by side, on a machine where a Go hello-world costs 6.2 ms. A pod that finds
  every tunnel process full used to wait for one to start
  (about 8 ms from exec to ready on the faster host until 9a7e5e4 and its next commit took
  gopacket's tables and a 300-fold regexp out of its start: ` + "`perf stat -r 40 sealmesh-tunnel --version`" + `
  7.2 → 3.9 ms). A spare process started in the background was tried there and left
  out (8ce276f), as it moved neither p50 nor p99 beyond the noise (three runs each) and
  cost every node an idle process (make bench at 52913e7: 12.67 MiB PSS per pod at one
  pod per process and ten pods against 11.69 in the run before). On the Turin-class VM,
  whose process starts are slow, those pods paid 27–30 ms over the p50 in sequence
  (*ADD-when-full-over-p50-ms*, the median of the 17th, 33rd, ... ADD less the p50), and
  d686d06 brought the spare back: started when a pod takes the last free room, and the
  one process without pods the agent keeps (none on a node without pods). Those pods
  then paid 11–14 ms (old and new trees alternating, three runs each): the spare's
  start shares the two cores with the ADDs beside it, and a process's first instance
  starts in 4–10 ms instead of 3. p50 and p99 (the largest of 100: the node's first
  pod, which still waits for a start) do not show it beyond their noise. On the
  paravirtualised host, one sequential run at 9e67d4b with every plugin's exec timed per
  pod (four rounds of 100) put the tail there: the pod that takes a process's last room
  paid about 5 ms more in sealmesh-cni (the spare's start beside its tunnel stage); the
  next, the first in the fresh process, about 7 ms more in bridge (the same start, still
  running) and 4.5 more in sealmesh-cni (a process's first instance: Nebula's start 2.5
  ms against 1.2). ` + "`perf stat -r 30 sealmesh-tunnel --version`" + ` costs 18 ms of CPU
  there (581 page faults; a Go hello-world 4.5). Starting the spare when half a process's
  room is left parted the two costs (p99 93.1 and 90.1 ms against 96.5 and 99.0, two
  interleaved pairs), but ten at a time it gained nothing in three pairs, and the host
  drifted more within the hour (p99 90 to 141 ms with one tree): not kept. Until
  9a6cd2e, two runs in five had a DEL p99 of 5 s in parallel batches: a pod's Nebula
  reader left waiting on a descriptor number another file had taken (docs/architecture.md, how an instance is stopped).

- **attest BenchmarkVerify/snp, /tdx, BenchmarkVerifySimulated**: one evidence
  verification (certificate chain, report or quote signature, report data) of the real
  Milan SNP report with its VCEK, the real TDX quote, and simulated SNP evidence. The
  inverse of ns/op is verifications per second on one core.

- **attest BenchmarkVerifyIdle**: the simulated verification back to back (*idle=0*)
  and with the process idle for 2 ms after each (*idle=2ms*), as a coordinator is
  between enrolments at moderate load: *cpu-µs/op* is the process's CPU time per
  verification, sleeping and waking included, *verify-µs* the time inside it. What
  idle=2ms costs more than idle=0 is the price of going idle and waking on this machine
  (a VM: a halted virtual CPU is woken through the hypervisor, and the caches are
  colder after), which an enrolment pays at several hops (agent, coordinator, etcd and
  back) when the cores have time to idle, as at half the peak rate, and not at the peak.

- **ca/coordinator BenchmarkRestartToReady**: a coordinator restarts over a store with n
  transitions and n issued certificates; one op is ` + "`New` + `Unlock`" + `: unseal the seed, verify
  every transition's hash link and owner signature and the latest pointer's signature,
  load every lease. ns/op is restart-to-ready time; heap-MiB is the heap the loaded
  coordinator holds. The store is on tmpfs (/dev/shm) where there is one, so the figure is
  verification and parsing, not disk.

- **test/ha BenchmarkCluster**: three coordinator processes, one per network namespace,
  over one real etcd, the agents' enrolments made from a hub namespace; everything
  (agents' simulated evidence, attested TLS both ends, the coordinators, etcd) shares
  this machine's two cores. *CryptoFloor*: what an enrolment cannot avoid, on one core:
  verifying simulated SNP evidence (report signature and the ARK/ASK/VCEK chain) and
  signing the Nebula certificate, as enrolments per second. *Enrol*: 24 agents (each
  with the four attested connections an agent's pool keeps to a coordinator already
  made) enrolling one pod after another for 3 s against one
  coordinator and against three: enrolments per second, *floor-ratio* (that rate over
  *floor-enrol/s*, the floor measured again on each side of that run with the mean
  taken: the machine's speed drifts within a run by up to a third, so the CryptoFloor
  row, measured minutes earlier, can differ from it), the latency of one enrolment
  (evidence, verification, an address chosen and its lease recorded by one
  compare-and-swap in etcd, certificate; the nonce came with the agent's previous
  answer), *cpu-ms/enrol* (the coordinators' user+system time per enrolment),
  *agents-cpu-ms/enrol* and *store-cpu-ms/enrol* (where the rest of the two cores goes:
  this process, which makes the agents' keys and evidence, and etcd),
  *store-ops/enrol* (etcd's own operation counters), *steal-pct* (the share of the two
  cores the hypervisor gave to other guests while this one had work: this machine is a
  VM), then *half-rate* latencies:
  enrolments started at half the measured peak rate for 10 s, open loop, each timed from
  when it was due (10 s, not 3: a rare stall of the store is then counted at the rate it
  happens, not in or out of a short window by chance), and *half-rate-handshakes*, the attested handshakes made during that run (0:
  the latencies are of enrolments, not of connection set-up); beside them, from the
  coordinators' own stage histograms (` + "`sealmesh_coordinator_enrolment_stage_seconds`" + `,
  interpolated in their buckets as Prometheus' histogram_quantile does),
  *half-rate-verify-p99-ms* (the evidence's check) and *half-rate-record-p50/p99-ms* (an
  address chosen, the certificate signed, its lease written to etcd), and from
  /proc/stat *half-rate-busy-pct* and *half-rate-steal-pct* (how busy the two cores
  were, and how much of them the hypervisor took, during that run); then *stall* latencies:
  the same rate across a 300 ms SIGSTOP of the first coordinator (a long pause, a live
  migration). Each run's pods are released afterwards, as CNI DEL does, so every run
  starts with the network as empty as the first (before, ten runs filled the /16 to
  80% and the last ones measured a nearly full network). Issue 7's goals are a
  floor ratio of at least 0.7 and a half-rate p99 under 20 ms. The host matters: the runs
  of 2026-11-24 were on an AMD EPYC; on the Intel Xeon of later runs every CPU figure
  (verification, CPU per enrolment) is 1.5–1.8× as large. Throughput is CPU-bound across
  three processes: of what an enrolment costs the two cores with one coordinator, the
  coordinator takes about 60% (verification, almost all of it the report's P-384
  signature, a little over half of that in a perf profile of one run; the rest is HTTP,
  TLS, JSON, the etcd client and the Go runtime, none of them above 6%), the agents
  about 30% (about half of it the simulated TEE's P-384 signature, which on real SNP
  the security processor makes, not the guest's CPU) and etcd about 10%; the median run reaches 0.68–0.86 of the floor (below 0.7 in one of four runs on the Intel host). On the
  host of the runs since 2026-12 (a paravirtualised guest), a perf profile of the peak
  with one coordinator (` + "`perf record -a -g -F 2000`" + ` for 3 s at 9e67d4b) split the
  coordinator's samples: the evidence's verification 38% and the certificate's signature
  2% (the crypto the floor measures), net/http serving the request 11%, the etcd client
  (gRPC's reader and writer, the group commit, the watch on the leases) 16%, the
  scheduler 8%, the runtime's sysmon thread 7%, JSON 7%, TLS 4%, the collector 4%; 21% of
  all of them were in the kernel and 15% in the hypervisor's ` + "`pvm_irq_enable`" + `, what a
  system call or a wake-up costs on this guest. What moved it from 0.54: group commit
  in the etcd store (swaps made while a transaction is in flight go together in the
  next, each a transaction of its own nested in the shared one, so one that loses its
  address costs the others nothing: 0.14 etcd operations per enrolment, from 2, and
  etcd's CPU per enrolment halved) and the
  holder's pointer written in the lease's own compare-and-swap on condition that the key
  has none, instead of read first; each answer carries the agent's next nonce (one
  request per enrolment, not two); the certificate is signed before its lease is
  recorded in one write (three writes before); a cached VCEK chain skips parsing its
  certificates; the agent derives its X25519 public key once. Before that: kept attested
  connections (per request, handshakes were a third of the coordinator's CPU), one
  coordinator's concurrent enrolments choosing different addresses, and next-fit
  allocation (114 → about 600 enrolments/s). Three coordinators reach the ratio on some
  hosts and runs and not on others (medians 0.57–0.72 in six make bench runs, runs
  from 0.50 to 0.76): the cores are shared, each process brings its own runtime and sees
  a third of the load (1.1–1.6× one coordinator's CPU per enrolment, and etcd batches a
  third as large: 0.4 operations per enrolment), so they add availability here, not
  throughput. *The half-rate tail* misses the goal on the Intel host: p99 28–72 ms by
  median over four make bench runs (p50 7–16 ms); on the EPYC it was 16–21 ms with one
  coordinator and 20–24 ms with three. The figures beside it say why. (1) Half the peak
  rate is not half the work: the two cores are 76–88% busy during it
  (*half-rate-busy-pct*), because an enrolment costs about twice the CPU it costs at the
  peak (in one run: the coordinator 2.1 ms against 1.4, the agents 1.0 against 0.7, etcd
  0.96 against 0.25). etcd spends about 1.2 ms of CPU on a transaction (0.65 ms user,
  0.55 system, measured alone with one client), and at half rate a transaction carries
  1.3 enrolments against 7 at the peak; and on this VM going idle and waking costs CPU
  (*BenchmarkVerifyIdle*: a verification with the process idle 2 ms after each costs
  1.6× the CPU of one back to back, 1244 µs against 774 in the run at 1fc5180: the
  sleep and wake-up about 0.17 ms, the verification itself 1.4× slower after waking), a
  price the peak, with no core idle, never pays. At that load the queues, not the work, set the tail. (2) The tail is the
  lease's write: *half-rate-record-p99-ms* is by median 19–20 ms of a p99 of 28–34 ms (two
  runs), while the verification's p99 is 6–10 ms for 1 ms of work. An instrumented run (each enrolment's
  stages joined by name, not kept) split the record stage of the slowest 1%: 8 ms
  waiting for the transaction in flight, 10 ms the transaction, while etcd's own WAL
  fsync, backend commit and apply stayed under 8 ms each (under 1 ms at the median): the
  transaction waits for a CPU, not for the disk. (3) The host takes its share:
  *steal-pct* was under 1% in the peak runs here and up to 5% in the half-rate ones,
  and 2–21% in 2 s samples during another run (its p99 81 ms); a stolen core stalls whatever runs on it. Removed from the tail
  before: every coordinator listed all leases every 30 s, the three in the same second
  (87–170 ms of etcd's time each with 8,000 leases, a p99 of 60 ms in the run it fell
  in); they now follow the leases through etcd's watch (docs/cluster.md). etcd 3.6
  snapshots its state every 10,000 raft entries, which stalled writes for 30–100 ms here
  (` + "`--snapshot-count 100000`" + `, an experiment, not a setting: a median p99 of 14 ms over
  five three-coordinator runs on the EPYC; docs/cluster.md says what a snapshot costs).
  Tried without effect: GOGC=400 and GOGC=off everywhere; GOMAXPROCS=1 everywhere (twice:
  with one coordinator it lowers the half-rate busy share from 82–87% to 69–72%, but
  the record stage's p99 grows from 16–20 to 24–26 ms and the p99 from 24–31 to 35–37
  ms in interleaved runs; with three, no change); a 2 s pause between the peak
  and half-rate runs; two etcd transactions in flight instead of one (twice: p99 medians
  46 against 38 ms in four interleaved pairs, within the noise, and 1.6× etcd's
  operations at the peak); etcd at nice −10 (two interleaved pairs, within the noise); etcd without fsync
  (` + "`--unsafe-no-fsync`" + `, an experiment, not a setting: about 11.5 → 10 ms on a quiet
  machine, within the noise); for the coordinator alone (three interleaved pairs each,
  2026-12-03): a floor of 64 MiB under its heap goal (the collector's mark work falls
  by 85% in a profile, but that is 3.5% of the coordinator's CPU, within the noise end
  to end, for 64 MiB more memory: not kept), and GOMAXPROCS=1 (its CPU per enrolment
  falls by 11–21% and the cores' half-rate busy share from 77–82% to 70–72%, the p99 is
  19–25 against 22–35 ms, but the peak falls by a tenth: one goal traded for the
  other); one verification at a time, so that the lease's goroutines (etcd's reply,
  the group commit, the answer) never wait behind two (the half-rate p99 13–16 against
  21 ms, but the peak falls to 510–550/s from 680–1020: the verification is the
  bottleneck at one core); GOMAXPROCS=3, a spare P for those goroutines (p99 22–24
  against 19–25 ms: nothing). The two cores are cores, not one core's two threads:
  two verifications at once run 5–10% slower each than one alone. The coordinators' CPU per enrolment over the agents' in the same run is
  steadier than either (2.10–2.11 with one coordinator, 2.58–2.62 with three, in three
  runs whose absolute figures moved by a quarter): the host's speed moves, the split of
  the work does not. What would move it: the agents on machines of their own
  (as they are: one per node), which also takes the simulated signature off these cores,
  and etcd on cores of its own (docs/cluster.md), which is where the record stage's
  time goes. The *stall* run found a real fault, now fixed: before, agents opened a connection
  per request once their kept ones were busy, so the backlog behind a 300 ms stall
  turned into a burst of attested handshakes (evidence on both sides) that kept the
  coordinator from catching up; every later enrolment of the run made a handshake and
  the p50 was 1.4 s. An agent now keeps at most four connections to a coordinator and
  queues past them: the p50 across the stall stays at 4–6 ms and the p99 is the stall
  plus about 100 ms to drain. (Go's HTTP/2, one connection per agent, cost the
  coordinator a quarter more CPU per enrolment.) *Failover*:
  four agents enrolling through one client listing all three coordinators, the one they
  use killed with SIGKILL: from the signal to each agent's first enrolment completed
  elsewhere (the one in flight fails, is retried with a fresh nonce at the next
  coordinator); the killed one is then started with no state and recovers its keys from
  its peers. *PeerRecovery*: a coordinator with no state of its own, from its process
  start to ` + "`/readyz`" + ` through gossip join and peer recovery (attested TLS in both
  directions, the store's history verified with the received seed). *ManifestToAll*: from
  the answer to a manifest update to every member serving the new generation, with three
  and with seven coordinators (each learns it from etcd's watch, or from a gossip hint
  that a peer is ahead, whichever comes first; polled every 10 ms, so ±10 ms). The
  three members are those the enrolment runs used (their pods released); the seven
  members are a fresh cluster.

- **ca/issuer BenchmarkSign, BenchmarkAllocate**: the two other hot paths of an
  enrolment, on one core: signing a Nebula host certificate (Ed25519), and choosing an
  address and recording its lease (` + "`Issue`" + `) in a /16 holding 0 or 10,000 leases, over the
  file store on tmpfs, so the figure is the allocator and the store's encoding, not a
  disk.
`
