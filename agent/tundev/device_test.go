package tundev

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sealmesh/sealmesh/internal/testenv"
	"github.com/sealmesh/sealmesh/test/netlab"
)

const testMTU = 1300

var labs atomic.Int32

// variants are each half of the offloads alone, both, and neither.
var variants = []struct {
	name string
	opts Options
}{
	{"plain", Options{}},
	{"read", Options{Read: true}},
	{"write", Options{Write: true}},
	{"both", Offload},
}

// end is one side of a wired pair: a device in its own namespace.
type end struct {
	ns      *netlab.NS
	dev     *Device
	v4, v6  netip.Prefix
	read    atomic.Uint64 // packets read from the device
	written atomic.Uint64 // packets written into it
	split   atomic.Bool   // the reader was seen splitting

	mu      sync.Mutex
	bad     []string // packets that failed parse
	seqs    stream
	flags   map[byte]int // TCP flag combinations seen on data-carrying segments
	maxSize int
}

// wire opens a device in each of two namespaces and joins them in user
// space: what the kernel sends into one comes out of the other. Each packet
// read is checked (parse) on the way.
func wire(t testing.TB, opts Options, check bool) (a, b *end) {
	t.Helper()
	lab := newLab(t, fmt.Sprintf("smtun%d-", labs.Add(1)))
	a = &end{v4: netip.MustParsePrefix("10.99.0.1/24"), v6: netip.MustParsePrefix("fd99::1/64")}
	b = &end{v4: netip.MustParsePrefix("10.99.0.2/24"), v6: netip.MustParsePrefix("fd99::2/64")}
	for i, e := range []*end{a, b} {
		ns, err := lab.NS(fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		e.ns, e.seqs.next, e.flags = ns, map[string]uint32{}, map[byte]int{}
		err = ns.Do(func() error {
			// A long queue: packets the kernel drops before they are
			// read leave gaps no check can tell from a splitter's.
			d, err := Open("sm0", testMTU, 20000, []netip.Prefix{e.v4, e.v6}, opts, nil)
			if err != nil {
				return err
			}
			e.dev = d
			return d.Activate()
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		a.dev.Close()
		b.dev.Close()
		wg.Wait()
	})
	pump := func(from, to *end) {
		defer wg.Done()
		buf := make([]byte, 9001)
		for {
			n, err := from.dev.Read(buf)
			if err != nil {
				return
			}
			from.read.Add(1)
			if from.dev.splitting.Load() {
				from.split.Store(true)
			}
			// The reader's position tells a packet of the same read as
			// the one before from the first of a new read.
			if check {
				up := from.dev.up.Load()
				from.check(buf[:n], up != nil && from.dev.splitting.Load() && up.r.i > 1)
			}
			if _, err := to.dev.Write(buf[:n]); err != nil {
				return
			}
			to.written.Add(1)
		}
	}
	wg.Add(2)
	go pump(a, b)
	go pump(b, a)
	return a, b
}

func (e *end) check(b []byte, batch bool) {
	p, err := parse(b, testMTU)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.maxSize = max(e.maxSize, len(b))
	if err != nil {
		e.bad = append(e.bad, err.Error())
		return
	}
	e.seqs.see(p, batch)
	if p.proto == 6 && len(p.payload) > 0 {
		e.flags[p.flags]++
	}
}

// stats are the interface's counters: the kernel counts a super-packet
// once, so fewer packets than were read or written means offloads worked.
func (e *end) stats(t testing.TB) (tx, rx, txDropped uint64) {
	t.Helper()
	err := e.ns.Do(func() error {
		l, err := netlink.LinkByName("sm0")
		if err != nil {
			return err
		}
		st := l.Attrs().Statistics
		tx, rx, txDropped = st.TxPackets, st.RxPackets, st.TxDropped
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tx, rx, txDropped
}

// transfer sends data over TCP from a to b, written in the given sizes
// with Nagle off (so segments of every size carry PSH), then half-closes;
// b answers the SHA-256 of what it received.
func transfer(t testing.TB, a, b *end, dst netip.Addr, sizes []int, total int) {
	t.Helper()
	var ln net.Listener
	if err := b.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		sum := h.Sum(nil)
		c.Write(sum)
		got <- sum
	}()
	var c net.Conn
	if err := a.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	c.(*net.TCPConn).SetNoDelay(true)
	data := make([]byte, total)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	for off, i := 0, 0; off < total; i++ {
		n := min(sizes[i%len(sizes)], total-off)
		if _, err := c.Write(data[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	c.(*net.TCPConn).CloseWrite()
	answer, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(answer, want[:]) || !bytes.Equal(<-got, want[:]) {
		t.Fatalf("%s: %d bytes arrived changed", dst, total)
	}
}

// TestKernelFlows runs TCP over IPv4 and IPv6, in writes of mixed sizes and
// flags, and UDP with segmentation offload, through a pair of devices,
// checking every packet the kernel handed over after splitting (checksums,
// lengths, sequence numbers contiguous), the bytes that arrive, and from
// the interfaces' own counters that the kernel sent super-packets and took
// coalesced ones exactly when the options say so.
func TestKernelFlows(t *testing.T) {
	testenv.RequireRoot(t)
	sizes := []int{1, 7, 100, testMTU, 1448, 4000, 9000, 65536, 200000, 3, 70000}
	for _, tc := range variants {
		t.Run(tc.name, func(t *testing.T) {
			a, b := wire(t, tc.opts, true)
			if got := a.dev.Offloads(); got != tc.opts {
				t.Fatalf("offloads %+v, asked for %+v", got, tc.opts)
			}
			transfer(t, a, b, b.v4.Addr(), sizes, 8<<20)
			transfer(t, a, b, b.v6.Addr(), sizes, 8<<20)
			udp(t, a, b)
			time.Sleep(200 * time.Millisecond) // the last ACKs through
			aTx, _, aDropped := a.stats(t)
			_, bRx, _ := b.stats(t)
			read, written := a.read.Load(), b.written.Load()
			a.dev.Close()
			b.dev.Close()

			for _, e := range []*end{a, b} {
				e.mu.Lock()
				if len(e.bad) > 0 {
					t.Errorf("%d bad packets, first: %s", len(e.bad), e.bad[0])
				}
				if len(e.seqs.split) > 0 {
					t.Errorf("%d gaps in sequence numbers inside one read, first: %s", len(e.seqs.split), e.seqs.split[0])
				}
				e.mu.Unlock()
			}
			if len(a.seqs.gaps) > 0 && aDropped == 0 {
				t.Errorf("%d gaps in sequence numbers and no packet dropped by the interface, first: %s", len(a.seqs.gaps), a.seqs.gaps[0])
			}
			if a.flags[tcpACK|tcpPSH] == 0 || a.flags[tcpACK] == 0 {
				t.Errorf("data segments by flags: %v; want some with PSH and some without", a.flags)
			}
			if a.maxSize != testMTU {
				t.Errorf("largest packet read %d bytes, want the MTU %d", a.maxSize, testMTU)
			}
			t.Logf("a: %d packets read from %d the kernel sent; b: %d written as %d the kernel took", read, aTx, written, bRx)
			// Without read offload the kernel may still queue a few
			// super-packets in the moment the offloaded path is made
			// (wireguard-go turns the offloads on, the device off
			// again): drained through the splitter, not lost, so the
			// counters cannot tell; the splitter must never be on.
			switch {
			case tc.opts.Read && read <= aTx:
				t.Errorf("read offload on, but the kernel sent %d packets for %d read: no super-packets", aTx, read)
			case !tc.opts.Read && a.split.Load():
				t.Errorf("read offload off, but the device was splitting (%d packets read of %d the kernel sent)", read, aTx)
			}
			switch coalesced := bRx < written; {
			case tc.opts.Write && !coalesced:
				t.Errorf("write offload on, but the kernel took %d packets for %d written: nothing coalesced", bRx, written)
			case !tc.opts.Write && coalesced:
				t.Errorf("write offload off, but %d packets written arrived as %d", written, bRx)
			}
		})
	}
}

// udp sends datagrams of mixed sizes, and one send with UDP_SEGMENT (the
// kernel hands the device a UDP super-packet where it has USO), and checks
// each arrives whole.
func udp(t *testing.T, a, b *end) {
	t.Helper()
	cl, srv := udpPair(t, a, b)
	var want []int
	for _, n := range []int{1, 200, testMTU - 28} {
		if _, err := cl.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		want = append(want, n)
	}
	const seg = 1000
	rc, err := cl.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, seg) })
	if serr != nil {
		t.Fatal(serr)
	}
	if _, err := cl.Write(bytes.Repeat([]byte{0xab}, 8*seg+123)); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		want = append(want, seg)
	}
	want = append(want, 123)
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	for i, n := range want {
		got, err := srv.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if got != n {
			t.Fatalf("datagram %d: %d bytes, want %d", i, got, n)
		}
	}
}

// TestCloseEndsRead: Nebula's reader blocks in Read; closing the device
// must end it with an error (Nebula then stops), never leave it hanging or
// read from unmapped buffers.
func TestCloseEndsRead(t *testing.T) {
	testenv.RequireRoot(t)
	for _, opts := range []Options{{}, Offload} {
		a, _ := wire(t, opts, true)
		done := make(chan error, 1)
		// wire's own pump is already reading; a second reader waits on
		// the first's lock, and both must end.
		go func() { _, err := a.dev.Read(make([]byte, 9001)); done <- err }()
		time.Sleep(50 * time.Millisecond)
		a.dev.Close()
		select {
		case err := <-done:
			if err == nil || !errors.Is(err, os.ErrClosed) {
				t.Fatalf("%+v: Read after Close: %v, want os.ErrClosed", opts, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%+v: Read still blocked after Close", opts)
		}
		if _, err := a.dev.Write(make([]byte, 40)); err == nil {
			t.Fatalf("%+v: Write after Close succeeded", opts)
		}
	}
}

// TestOffloadsOnlyForBursts: packets that come apart (pings, requests)
// leave the device on the plain path, which costs nothing beyond the
// descriptor; a bulk transfer turns the offloads on, on both devices.
func TestOffloadsOnlyForBursts(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := wire(t, Offload, true)
	cl, srv := udpPair(t, a, b)
	buf := make([]byte, 100)
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range 3 * upgradeAfter {
		if _, err := cl.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Read(buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * burstGap)
	}
	if a.dev.up.Load() != nil || b.dev.up.Load() != nil {
		t.Fatal("offloads turned on by packets that came apart")
	}
	transfer(t, a, b, b.v4.Addr(), []int{65536}, 4<<20)
	if a.dev.up.Load() == nil || b.dev.up.Load() == nil {
		t.Fatal("a bulk transfer left the offloads off")
	}
}

// Issue 29: a device that carried bulk traffic gives the offloaded path's
// memory back once no packet has come for dropAfter (wireguard-go's
// device, on a descriptor of its own, is closed), keeps it while packets
// still come more often than that, and makes it again at the next burst.
func TestOffloadsDroppedWhenQuiet(t *testing.T) {
	testenv.RequireRoot(t)
	// Put back after the devices' cleanup, which wire registers later.
	was := dropAfter
	t.Cleanup(func() { dropAfter = was })
	dropAfter = 300 * time.Millisecond
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	a, b := wire(t, Offload, true)
	cl, srv := udpPair(t, a, b)
	before := fds()
	transfer(t, a, b, b.v4.Addr(), []int{65536}, 4<<20)
	if a.dev.up.Load() == nil || b.dev.up.Load() == nil {
		t.Fatal("a bulk transfer left the offloads off")
	}
	// Each offloaded path holds a duplicate of the TUN's descriptor and
	// wireguard-go's link watch (a netlink socket, a pipe to stop it).
	if got := fds(); got != before+2*4 {
		t.Fatalf("%d descriptors with both devices offloaded, want %d (four each)", got, before+2*4)
	}
	// A packet every 100 ms keeps it.
	buf := make([]byte, 100)
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range 10 {
		if _, err := cl.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Read(buf); err != nil {
			t.Fatal(err)
		}
		time.Sleep(dropAfter / 3)
	}
	if a.dev.up.Load() == nil {
		t.Fatal("the sender's offloaded path was dropped while packets still came")
	}
	for deadline := time.Now().Add(10 * time.Second); a.dev.up.Load() != nil || b.dev.up.Load() != nil; {
		if time.Now().After(deadline) {
			t.Fatalf("offloaded paths still there %s after the last packet", 10*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := fds(); got != before {
		t.Fatalf("%d descriptors after both paths were dropped, want %d", got, before)
	}
	// Plain packets still flow, and the next burst turns the offloads on again.
	if _, err := cl.Write(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Read(buf); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b, b.v4.Addr(), []int{65536}, 4<<20)
	if a.dev.up.Load() == nil || b.dev.up.Load() == nil {
		t.Fatal("a bulk transfer after the drop left the offloads off")
	}
	if !splitting(a) {
		t.Error("the sender is not splitting again")
	}
}

// BenchmarkDevice moves one TCP stream through two wired devices (no
// Nebula, no crypto: the device's own share) with each half of the
// offloads on alone, both, and neither, and reports the throughput and how
// many packets each system call carried on each side.
func BenchmarkDevice(b *testing.B) {
	testenv.RequireRoot(b)
	for _, tc := range variants {
		b.Run(tc.name, func(b *testing.B) {
			const total = 256 << 20
			var secs float64
			var perRead, perWrite float64
			for range b.N {
				x, y := wire(b, tc.opts, false)
				start := time.Now()
				transfer(b, x, y, y.v4.Addr(), []int{1 << 20}, total)
				secs += time.Since(start).Seconds()
				tx, _, _ := x.stats(b)
				_, rx, _ := y.stats(b)
				perRead += float64(x.read.Load()) / float64(tx)
				perWrite += float64(y.written.Load()) / float64(rx)
				x.dev.Close()
				y.dev.Close()
			}
			b.ReportMetric(float64(b.N)*total*8/secs/1e9, "Gb/s")
			b.ReportMetric(perRead/float64(b.N), "packets/read")
			b.ReportMetric(perWrite/float64(b.N), "packets/write")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestSplitterFollowsTCP: after a TCP transfer has turned the splitter on,
// reads that carry no TCP (a UDP flood) turn it off, so that the kernel
// finishes checksums again; every datagram still arrives whole, including
// any queued while the kernel left its checksum to the device; TCP turns
// the splitter on again.
// BenchmarkDeviceRTT times a lone packet's round trip (a UDP echo, one at
// a time, 1 ms apart) through three wired pairs of devices, taking turns
// so that the machine's drift is shared: plain (no virtio header), idle
// (offloads asked for, the path dropped after a bulk transfer: plain
// packets behind a virtio header) and offloaded (the path a bulk transfer
// made, which a ping takes in the seconds after it).
func BenchmarkDeviceRTT(b *testing.B) {
	testenv.RequireRoot(b)
	type pair struct {
		name string
		x, y *end
		cl   *net.UDPConn
		rtts []time.Duration
	}
	var pairs []*pair
	for _, name := range []string{"plain", "idle", "offloaded"} {
		opts := Offload
		if name == "plain" {
			opts = Options{}
		}
		was := dropAfter
		if name == "idle" {
			dropAfter = 50 * time.Millisecond // this pair's devices only
		}
		x, y := wire(b, opts, false)
		dropAfter = was
		if opts != (Options{}) {
			transfer(b, x, y, y.v4.Addr(), []int{65536}, 4<<20)
			if x.dev.up.Load() == nil || y.dev.up.Load() == nil {
				b.Fatal("a bulk transfer left the offloads off")
			}
		}
		for name == "idle" && (x.dev.up.Load() != nil || y.dev.up.Load() != nil) {
			time.Sleep(10 * time.Millisecond)
		}
		cl, srv := udpPair(b, x, y)
		go func() {
			buf := make([]byte, 100)
			for {
				n, from, err := srv.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				srv.WriteToUDPAddrPort(buf[:n], from)
			}
		}()
		cl.SetDeadline(time.Now().Add(time.Hour))
		pairs = append(pairs, &pair{name: name, x: x, y: y, cl: cl})
	}
	buf := make([]byte, 100)
	for range 1000 * b.N {
		for _, p := range pairs {
			start := time.Now()
			if _, err := p.cl.Write(buf[:64]); err != nil {
				b.Fatal(err)
			}
			if _, err := p.cl.Read(buf); err != nil {
				b.Fatal(err)
			}
			p.rtts = append(p.rtts, time.Since(start))
			time.Sleep(time.Millisecond)
		}
	}
	for _, p := range pairs {
		if up := p.x.dev.up.Load() != nil; up != (p.name == "offloaded") {
			b.Fatalf("%s: offloaded path %v at the end", p.name, up)
		}
		slices.Sort(p.rtts)
		b.ReportMetric(float64(p.rtts[len(p.rtts)/2].Nanoseconds())/1e3, p.name+"-p50-µs")
	}
	b.ReportMetric(0, "ns/op")
}

func TestSplitterFollowsTCP(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := wire(t, Offload, true)
	transfer(t, a, b, b.v4.Addr(), []int{65536}, 4<<20)
	if !splitting(a) {
		t.Fatal("a TCP transfer left the splitter off")
	}
	for range 3 {
		udp(t, a, b) // 12 datagrams each, one of them a UDP super-packet
	}
	cl, srv := udpPair(t, a, b)
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2000)
	for i := range 2 * quietReads {
		if _, err := cl.Write(buf[:1000]); err != nil {
			t.Fatal(err)
		}
		if n, err := srv.Read(buf); err != nil || n != 1000 {
			t.Fatalf("datagram %d: %d bytes, %v", i, n, err)
		}
	}
	if splitting(a) {
		t.Fatal("the splitter stayed on through reads without TCP")
	}
	transfer(t, a, b, b.v4.Addr(), []int{65536}, 4<<20)
	if !splitting(a) {
		t.Fatal("TCP did not turn the splitter on again")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.bad) > 0 {
		t.Fatalf("%d bad packets, first: %s", len(a.bad), a.bad[0])
	}
}

func splitting(e *end) bool { return e.dev.splitting.Load() }

// udpPair is a UDP socket in a's namespace connected to one in b's, both
// closed when the test ends.
func udpPair(t testing.TB, a, b *end) (cl, srv *net.UDPConn) {
	t.Helper()
	if err := b.ns.Do(func() (err error) {
		srv, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.v4.Addr(), 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := a.ns.Do(func() (err error) {
		cl, err = net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl, srv
}
