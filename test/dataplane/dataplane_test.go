package dataplane

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"
	"github.com/vishvananda/netlink"

	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/ca/api"
	"github.com/sealmesh/sealmesh/ca/issuer"
	"github.com/sealmesh/sealmesh/internal/testenv"
	"github.com/sealmesh/sealmesh/test/mesh"
	"github.com/sealmesh/sealmesh/test/netlab"
	"github.com/sealmesh/sealmesh/test/tools"
)

// contender is one way for pod a to reach pod b.
type contender struct {
	name string
	dst  netip.Addr // b's address on this path
	pids []int      // the processes doing the tunnelling (none for the raw link)
}

// BenchmarkDataPlane runs, between the same two pods of a real mesh (each in
// its network namespace behind the node's bridge), one after the other in
// each round: the raw underlay (veth and bridge), sealmesh (the pods' Nebula
// instances, as the agent configures them), the stock nebula binary built
// from the module version sealmesh links with sealmesh's settings
// (nebula-equal) and with Nebula's defaults (nebula-default), and
// wireguard-go. Per contender: one TCP stream for 10 s and UDP at full rate
// for 5 s (iperf3), ICMP round trip, the tunnel processes' CPU seconds per GB
// received and their resident memory idle and under load.
func BenchmarkDataPlane(b *testing.B) {
	testenv.RequireRoot(b)
	iperf, err := exec.LookPath("iperf3")
	if err != nil {
		b.Fatal("iperf3 is not installed (make bench installs it with apt-get)")
	}
	ctx := context.Background()
	work := b.TempDir()
	// One tunnel process per pod, as for two pods on two nodes, and as the
	// stock contenders run: embedding is what is compared, not sharing.
	m, err := mesh.Up(ctx, mesh.Options{BinDir: binDir, WorkDir: work, Prefix: fmt.Sprintf("smdp%d", os.Getpid()%100000), PodsPerProcess: 1})
	defer func() {
		if err := m.Close(context.Background()); err != nil {
			b.Errorf("cleanup: %v", err)
		}
	}()
	if err != nil {
		b.Fatal(err)
	}
	pa, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		b.Fatal(err)
	}
	pb, err := m.AddPod(ctx, "pod-b")
	if err != nil {
		b.Fatal(err)
	}
	tun, err := m.Tunnel(pa)
	if err != nil {
		b.Fatal(err)
	}
	tunB, err := m.Tunnel(pb)
	if err != nil {
		b.Fatal(err)
	}
	rec, err := m.AgentRecord(pa)
	if err != nil {
		b.Fatal(err)
	}
	mtu := int(rec["result"].(map[string]any)["mtu"].(float64))

	contenders := []contender{
		{name: "veth", dst: pb.UnderlyIP},
		{name: "sealmesh", dst: pb.OverlayIP, pids: []int{tun.PID, tunB.PID}},
	}
	st, err := stockNebula(m, pa, pb, mtu, work)
	if err != nil {
		b.Fatal(err)
	}
	contenders = append(contenders, st...)
	wg, err := wireguardGo(m, pa, pb, work)
	if err != nil {
		b.Fatal(err)
	}
	contenders = append(contenders, wg)

	if _, err := m.Lab.Start(pb.NS, filepath.Join(work, "iperf3-server.log"), iperf, "-s"); err != nil {
		b.Fatal(err)
	}
	// Tunnels up and the iperf3 server listening before anything is timed.
	for _, c := range contenders {
		ok := false
		for range 20 {
			if r, err := pa.NS.Ping(c.dst, 1, time.Second); err == nil && r.Received == 1 {
				ok = true
				break
			}
		}
		if !ok {
			b.Fatalf("%s: pod-a cannot reach pod-b at %s", c.name, c.dst)
		}
	}
	time.Sleep(time.Second)

	for _, c := range contenders {
		b.Run(c.name, func(b *testing.B) {
			rssIdle := tools.RSS(c.pids)
			cpu0 := tools.CPUSeconds(c.pids)
			stop := sampleRSS(c.pids)
			tcp, err := runIperf(pa.NS, iperf, c.dst, "-t", "10")
			peak := stop()
			if err != nil {
				b.Fatal(err)
			}
			cpu := tools.CPUSeconds(c.pids) - cpu0
			udp, err := runIperf(pa.NS, iperf, c.dst, "-u", "-b", "0", "-l", "1200", "-t", "5")
			if err != nil {
				b.Fatal(err)
			}
			ping, err := pa.NS.Ping(c.dst, 10, 2*time.Second)
			if err != nil || ping.Received == 0 {
				b.Fatalf("ping: %v %v", ping, err)
			}
			slices.Sort(ping.RTTs)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(tcp.bps/1e9, "tcp-Gb/s")
			b.ReportMetric(udp.bps/1e9, "udp-Gb/s")
			b.ReportMetric(float64(ping.RTTs[len(ping.RTTs)/2].Microseconds())/1000, "rtt-ms")
			if len(c.pids) > 0 {
				b.ReportMetric(cpu/(tcp.bytes/1e9), "cpu-s/GB")
				b.ReportMetric(rssIdle/1024, "rss-idle-MiB")
				b.ReportMetric(peak/1024, "rss-load-MiB")
			}
			b.ReportMetric(tcp.retransmits, "tcp-retrans")
		})
	}
}

type iperfResult struct {
	bps, bytes, retransmits float64
}

// runIperf runs an iperf3 client in ns against dst and returns what the
// receiver got.
func runIperf(ns *netlab.NS, iperf string, dst netip.Addr, args ...string) (iperfResult, error) {
	var out []byte
	err := ns.Do(func() error {
		var err error
		out, err = exec.Command(iperf, append([]string{"-c", dst.String(), "-J"}, args...)...).Output()
		return err
	})
	var r struct {
		End struct {
			Sum struct {
				Bytes       float64 `json:"bytes"`
				BPS         float64 `json:"bits_per_second"`
				LostPercent float64 `json:"lost_percent"`
			} `json:"sum"`
			SumSent struct {
				Retransmits float64 `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bytes float64 `json:"bytes"`
				BPS   float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil || r.Error != "" || err != nil {
		return iperfResult{}, fmt.Errorf("iperf3 %v to %s: %v %v %s", args, dst, err, jerr, r.Error)
	}
	if r.End.SumReceived.BPS > 0 { // TCP, and UDP on iperf3 ≥ 3.13
		return iperfResult{bps: r.End.SumReceived.BPS, bytes: r.End.SumReceived.Bytes, retransmits: r.End.SumSent.Retransmits}, nil
	}
	// UDP on older iperf3: the sender's rate less what the receiver lost.
	keep := 1 - r.End.Sum.LostPercent/100
	return iperfResult{bps: r.End.Sum.BPS * keep, bytes: r.End.Sum.Bytes * keep}, nil
}

// stockNebula starts the stock nebula binary in both pods twice: with the
// configuration sealmesh renders for its instances (its MTU, socket settings,
// firewall), and with Nebula's defaults (MTU 1300). Each pair has a CA and an
// overlay of its own and finds its peer by a static host entry.
func stockNebula(m *mesh.Mesh, a, b *mesh.Pod, mtu int, work string) ([]contender, error) {
	var out []contender
	for i, variant := range []string{"nebula-equal", "nebula-default"} {
		_, caKey, _ := ed25519.GenerateKey(rand.Reader)
		overlay := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(98 - i), 0, 0}), 24)
		ca, err := issuer.NewCA(caKey, variant, []netip.Prefix{overlay}, time.Hour, time.Now())
		if err != nil {
			return nil, err
		}
		port := 4243 + i
		pods := []*mesh.Pod{a, b}
		c := contender{name: variant}
		for j, p := range pods {
			peer := pods[1-j]
			ip := netip.AddrFrom4([4]byte{10, byte(98 - i), 0, byte(11 + j)})
			peerIP := netip.AddrFrom4([4]byte{10, byte(98 - i), 0, byte(11 + (1 - j))})
			k, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				return nil, err
			}
			crt, err := ca.Sign(issuer.Host{Name: fmt.Sprintf("%s-%s", variant, p.Name), Networks: []netip.Prefix{netip.PrefixFrom(ip, 24)},
				PublicKey: k.PublicKey().Bytes(), NotAfter: time.Now().Add(time.Hour)}, time.Now())
			if err != nil {
				return nil, err
			}
			crtPEM, _ := crt.MarshalPEM()
			var cfg map[string]any
			if variant == "nebula-equal" {
				b, err := tunnel.Config(&api.EnrolResponse{CA: string(ca.PEM()), Certificate: string(crtPEM),
					Inbound: []api.FirewallRule{{Proto: "any", Port: "any"}}}, k.Bytes(),
					tunnel.Options{Device: fmt.Sprintf("nebst%d", i), MTU: mtu, ListenPort: port})
				if err != nil {
					return nil, err
				}
				if err := json.Unmarshal(b, &cfg); err != nil {
					return nil, err
				}
			} else {
				cfg = map[string]any{
					"pki": map[string]any{"ca": string(ca.PEM()), "cert": string(crtPEM),
						"key": string(cert.MarshalPrivateKeyToPEM(cert.Curve_CURVE25519, k.Bytes()))},
					"listen":   map[string]any{"host": "0.0.0.0", "port": port},
					"tun":      map[string]any{"dev": fmt.Sprintf("nebst%d", i)},
					"firewall": map[string]any{"outbound": []any{map[string]any{"port": "any", "proto": "any", "host": "any"}}, "inbound": []any{map[string]any{"port": "any", "proto": "any", "host": "any"}}},
				}
			}
			cfg["static_host_map"] = map[string][]string{peerIP.String(): {netip.AddrPortFrom(peer.UnderlyIP, uint16(port)).String()}}
			file := filepath.Join(work, fmt.Sprintf("%s-%s.yml", variant, p.Name))
			raw, _ := json.Marshal(cfg)
			if err := os.WriteFile(file, raw, 0o600); err != nil {
				return nil, err
			}
			cmd, err := m.Lab.Start(p.NS, file+".log", filepath.Join(binDir, "nebula"), "-config", file)
			if err != nil {
				return nil, err
			}
			c.pids = append(c.pids, cmd.Process.Pid)
			if j == 0 {
				c.dst = peerIP
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// wireguardGo starts wireguard-go in both pods (interface wgbench, its default
// MTU 1420), configured over its UAPI socket.
func wireguardGo(m *mesh.Mesh, a, b *mesh.Pod, work string) (contender, error) {
	pods := []*mesh.Pod{a, b}
	keys := make([]*ecdh.PrivateKey, 2)
	for j := range keys {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return contender{}, err
		}
		keys[j] = k
	}
	c := contender{name: "wireguard-go", dst: netip.MustParseAddr("10.96.0.12")}
	for j, p := range pods {
		// The UAPI socket lives in /var/run/wireguard, shared by both pods:
		// each interface needs a name of its own.
		name := fmt.Sprintf("wgbench%d", j)
		cmd, err := m.Lab.Start(p.NS, filepath.Join(work, name+".log"), filepath.Join(binDir, "wireguard"), "-f", name)
		if err != nil {
			return c, err
		}
		c.pids = append(c.pids, cmd.Process.Pid)
		sock := "/var/run/wireguard/" + name + ".sock"
		var conn net.Conn
		for range 100 {
			if conn, err = net.Dial("unix", sock); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			return c, fmt.Errorf("wireguard-go %s: %w", name, err)
		}
		peer := pods[1-j]
		set := fmt.Sprintf("set=1\nprivate_key=%s\nlisten_port=51820\npublic_key=%s\nendpoint=%s\nallowed_ip=10.96.0.%d/32\n\n",
			hex.EncodeToString(keys[j].Bytes()), hex.EncodeToString(keys[1-j].PublicKey().Bytes()),
			netip.AddrPortFrom(peer.UnderlyIP, 51820), 11+(1-j))
		conn.Write([]byte(set))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if err != nil || strings.TrimSpace(line) != "errno=0" {
			return c, fmt.Errorf("wireguard-go %s: configure: %q %v", name, line, err)
		}
		if err := p.NS.Do(func() error {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			ip := netip.AddrFrom4([4]byte{10, 96, 0, byte(11 + j)})
			if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
				return err
			}
			return netlink.LinkSetUp(l)
		}); err != nil {
			return c, fmt.Errorf("wireguard-go %s: %w", name, err)
		}
	}
	return c, nil
}

// sampleRSS samples rss every 100 ms until stop, which returns the peak.
func sampleRSS(pids []int) (stop func() float64) {
	var mu sync.Mutex
	peak := tools.RSS(pids)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				v := tools.RSS(pids)
				mu.Lock()
				peak = max(peak, v)
				mu.Unlock()
			}
		}
	}()
	return func() float64 {
		close(done)
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}
