package tundev

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sealmesh/sealmesh/internal/testenv"
)

// splitLab is a namespace that forwards from an injector TUN (raw, with
// the virtio header: the test writes super-packets into the kernel) to a
// Device with read offload: the kernel passes a forwarded GSO packet on
// whole to a device that takes TSO, so what the Device splits is exactly
// what the fuzzer wrote, after the kernel's own checks.
type splitLab struct {
	inject  int // the injector's fd
	dev     *Device
	packets chan []byte
}

var (
	injSrc4 = netip.MustParseAddr("10.97.0.2")
	devDst4 = netip.MustParseAddr("10.98.0.2")
	injSrc6 = netip.MustParseAddr("fd97::2")
	devDst6 = netip.MustParseAddr("fd98::2")
)

func newSplitLab(t testing.TB) *splitLab {
	s := newForwardLab(t)
	s.read(t, 4096)
	return s
}

// read reads the Device into packets (room for n) until the test ends.
func (s *splitLab) read(t testing.TB, n int) {
	s.packets = make(chan []byte, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			b := make([]byte, 9001)
			n, err := s.dev.Read(b)
			if err != nil {
				return
			}
			s.packets <- b[:n]
		}
	}()
	t.Cleanup(func() {
		s.dev.Close()
		<-done
	})
}

// newForwardLab is a splitLab whose Device nobody reads yet.
func newForwardLab(t testing.TB) *splitLab {
	lab := newLab(t, "smsplit")
	ns, err := lab.NS("fwd")
	if err != nil {
		t.Fatal(err)
	}
	s := &splitLab{}
	err = ns.Do(func() error {
		for _, k := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(k, []byte("1"), 0); err != nil {
				return err
			}
		}
		d, err := Open("smout", testMTU, 20000, []netip.Prefix{netip.MustParsePrefix("10.98.0.1/24"), netip.MustParsePrefix("fd98::1/64")}, Options{Read: true}, nil)
		if err != nil {
			return err
		}
		s.dev = d
		if err := d.Activate(); err != nil {
			return err
		}
		// Offloads on from the start (else the kernel segments what
		// the plain path reads until a burst turns them on).
		d.upgrade()
		if d.up.Load() == nil {
			return errors.New("offloads refused")
		}
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.inject = fd
		ifr, _ := unix.NewIfreq("smin")
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			return err
		}
		in, err := netlink.LinkByName("smin")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMTU(in, 9000); err != nil {
			return err
		}
		if err := addAddresses(&netlink.Handle{}, in, []netip.Prefix{netip.MustParsePrefix("10.97.0.1/24"), netip.MustParsePrefix("fd97::1/64")}); err != nil {
			return err
		}
		return netlink.LinkSetUp(in)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.dev.Close()
		unix.Close(s.inject)
	})
	return s
}

// segment is one fuzzed super-packet.
type segment struct {
	v6      bool
	mss     int
	payload []byte
	flags   byte
	options int // TCP option bytes, a multiple of 4
	id      uint16
	seq     uint32
	sport   uint16
}

func (g segment) headers() (ip, tcp int) {
	ip = 20
	if g.v6 {
		ip = 40
	}
	return ip, 20 + g.options
}

// packet is the super-packet with its virtio header, as a guest's driver
// would hand it over: checksum partial (the pseudo-header's sum in the
// field), segmentation asked for at mss.
func (g segment) packet() []byte {
	iph, tcph := g.headers()
	b := make([]byte, virtioNetHdrLen+iph+tcph+len(g.payload))
	v, p := b[:virtioNetHdrLen], b[virtioNetHdrLen:]
	v[0] = unix.VIRTIO_NET_HDR_F_NEEDS_CSUM
	v[1] = unix.VIRTIO_NET_HDR_GSO_TCPV4
	if g.v6 {
		v[1] = unix.VIRTIO_NET_HDR_GSO_TCPV6
	}
	if g.flags&tcpCWR != 0 {
		// As the kernel's own TCP marks it (SKB_GSO_TCP_ECN): only a
		// device that takes TSO with ECN may get it whole, which the
		// Device does not ask for, so the kernel segments it first.
		v[1] |= unix.VIRTIO_NET_HDR_GSO_ECN
	}
	binary.LittleEndian.PutUint16(v[2:], uint16(iph+tcph))
	binary.LittleEndian.PutUint16(v[4:], uint16(g.mss))
	binary.LittleEndian.PutUint16(v[6:], uint16(iph))
	binary.LittleEndian.PutUint16(v[8:], 16)
	l4len := tcph + len(g.payload)
	var pseudo uint32
	if g.v6 {
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:], uint16(l4len))
		p[6], p[7] = 6, 64
		s, d := injSrc6.As16(), devDst6.As16()
		copy(p[8:], s[:])
		copy(p[24:], d[:])
		pseudo = sum(p[8:40], 0) + 6 + uint32(l4len)
	} else {
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(iph+l4len))
		binary.BigEndian.PutUint16(p[4:], g.id)
		p[8], p[9] = 64, 6
		s, d := injSrc4.As4(), devDst4.As4()
		copy(p[12:], s[:])
		copy(p[16:], d[:])
		binary.BigEndian.PutUint16(p[10:], checksum(p[:20], 0))
		pseudo = sum(p[12:20], 0) + 6 + uint32(l4len)
	}
	t := p[iph:]
	binary.BigEndian.PutUint16(t, g.sport)
	binary.BigEndian.PutUint16(t[2:], 80)
	binary.BigEndian.PutUint32(t[4:], g.seq)
	binary.BigEndian.PutUint32(t[8:], 7)
	t[12] = byte(tcph/4) << 4
	t[13] = g.flags | tcpACK
	binary.BigEndian.PutUint16(t[14:], 65535)
	for i := 20; i < tcph; i++ {
		t[i] = 1 // NOP options
	}
	copy(t[tcph:], g.payload)
	binary.BigEndian.PutUint16(t[16:], ^checksum(nil, pseudo))
	return b
}

var splitPort uint16 = 1024

// FuzzSplit writes a TCP super-packet (IPv4 or IPv6, any MSS the path
// allows, 0 to 40 option bytes, any of PSH, FIN, CWR, ECE, URG) into the
// kernel, which forwards it whole to the Device, and checks what the
// Device's reads hand to Nebula: every segment a valid packet (lengths,
// IPv4 header and TCP checksums computed here, not trusted), no bigger than
// the MTU, each but the last carrying exactly MSS bytes, sequence numbers
// contiguous from the first, IPv4 IDs counting up, PSH and FIN only on the
// last segment and CWR only on the first (as the kernel's own segmentation
// does), and the payloads together the bytes written. The seeds run with
// the tests; `go test -fuzz FuzzSplit ./agent/tundev` (as root) explores.
func FuzzSplit(f *testing.F) {
	testenv.RequireRoot(f)
	f.Add(false, uint16(1200), uint16(5000), byte(tcpPSH), uint8(0), uint16(1), uint32(1000))
	f.Add(true, uint16(1000), uint16(60000), byte(tcpPSH|tcpFIN), uint8(10), uint16(0), uint32(0xfffff000))
	f.Add(false, uint16(88), uint16(3000), byte(tcpCWR|0x40), uint8(3), uint16(0xffff), uint32(7))
	f.Add(true, uint16(1212), uint16(1213), byte(0x20), uint8(1), uint16(9), uint32(42))
	f.Add(false, uint16(1260), uint16(65000), byte(tcpFIN), uint8(0), uint16(65530), uint32(1))
	s := newSplitLab(f)
	f.Fuzz(func(t *testing.T, v6 bool, mss, size uint16, flags byte, optWords uint8, id uint16, seq uint32) {
		g := segment{v6: v6, flags: flags & (tcpPSH | tcpFIN | tcpCWR | 0x40 | 0x20), options: int(optWords%11) * 4, id: id, seq: seq}
		iph, tcph := g.headers()
		// The path's MTU bounds the MSS (the kernel answers "too big"
		// otherwise), and a GSO packet carries more than one MSS.
		g.mss = 8 + int(mss)%(testMTU-iph-tcph-8+1)
		n := g.mss + 1 + int(size)%(65535-iph-tcph-g.mss)
		if n > 64*g.mss {
			n = 64 * g.mss // at most 64 segments: the kernel's own limit is higher, wireguard-go's batch 128
		}
		g.payload = make([]byte, n)
		for i := range g.payload {
			g.payload[i] = byte(int(seq) + i*31)
		}
		splitPort++
		g.sport = splitPort
		for len(s.packets) > 0 {
			<-s.packets
		}
		if _, err := unix.Write(s.inject, g.packet()); err != nil {
			t.Skipf("the kernel refused the super-packet: %v", err)
		}
		want := (n + g.mss - 1) / g.mss
		var segs []packet
		deadline := time.After(2 * time.Second)
		for len(segs) < want {
			select {
			case b := <-s.packets:
				p, err := parse(b, testMTU)
				if err != nil {
					t.Fatalf("segment %d: %v", len(segs), err)
				}
				if p.proto != 6 || p.sport != g.sport {
					continue // the kernel's own traffic, or an earlier input's
				}
				if len(b) > testMTU {
					t.Fatalf("segment of %d bytes", len(b))
				}
				p.payload = bytes.Clone(p.payload)
				segs = append(segs, p)
			case <-deadline:
				if len(segs) == 0 {
					t.Skip("nothing forwarded: the kernel dropped the packet")
				}
				t.Fatalf("%d of %d segments", len(segs), want)
			}
		}
		check := func(i int, p packet) error {
			if got, want := p.seq, g.seq+uint32(i*g.mss); got != want {
				return fmt.Errorf("seq %d, want %d", got, want)
			}
			last := i == len(segs)-1
			if !last && len(p.payload) != g.mss {
				return fmt.Errorf("%d bytes, want the MSS %d", len(p.payload), g.mss)
			}
			wantFlags := g.flags | tcpACK
			if !last {
				wantFlags &^= tcpPSH | tcpFIN
			}
			if i > 0 {
				wantFlags &^= tcpCWR
			}
			if p.flags != wantFlags {
				return fmt.Errorf("flags %#02x, want %#02x", p.flags, wantFlags)
			}
			// IPv4 IDs: one per segment, counting up, as the kernel's.
			if !v6 && p.id != g.id+uint16(i) {
				return fmt.Errorf("IPv4 ID %d, want %d", p.id, g.id+uint16(i))
			}
			return nil
		}
		var got []byte
		for i, p := range segs {
			if err := check(i, p); err != nil {
				t.Fatalf("segment %d of %d (MSS %d, %d bytes, v6 %v): %v", i, len(segs), g.mss, n, v6, err)
			}
			got = append(got, p.payload...)
		}
		if !bytes.Equal(got, g.payload) {
			t.Fatalf("payload changed in splitting")
		}
	})
}

// TestSplitterStopsWithoutLoss: once reads stop carrying TCP the kernel
// is told to stop handing over super-packets, but one it queued before
// that is still split and handed over, not dropped (the plain read cannot
// split what does not fit its buffer).
func TestSplitterStopsWithoutLoss(t *testing.T) {
	testenv.RequireRoot(t)
	s := newForwardLab(t)
	if !s.dev.splitting.Load() {
		t.Fatal("not splitting after the upgrade")
	}
	// Queued before any read: quietReads lone UDP packets, which turn the
	// splitter off once read, then a super-packet behind them.
	for i := range quietReads {
		if _, err := unix.Write(s.inject, udpPacket(uint16(i))); err != nil {
			t.Fatal(err)
		}
	}
	g := segment{mss: 1000, payload: make([]byte, 4000), flags: tcpPSH, id: 1, seq: 1, sport: 4242}
	for i := range g.payload {
		g.payload[i] = byte(i)
	}
	if _, err := unix.Write(s.inject, g.packet()); err != nil {
		t.Fatal(err)
	}

	s.read(t, 256)
	var udps int
	var segs []packet
	deadline := time.After(5 * time.Second)
	for len(segs) < 4 {
		select {
		case b := <-s.packets:
			p, err := parse(b, testMTU)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case p.proto == 17:
				udps++
			case p.proto == 6 && p.sport == g.sport:
				if udps < quietReads {
					t.Fatalf("a segment after %d of %d UDP packets", udps, quietReads)
				}
				segs = append(segs, p)
			}
		case <-deadline:
			t.Fatalf("%d UDP packets and %d of 4 segments read, splitting %v: the super-packet was lost", udps, len(segs), s.dev.splitting.Load())
		}
	}
	if s.dev.splitting.Load() {
		t.Error("still splitting after reads without TCP")
	}
	for i, p := range segs {
		if want := g.seq + uint32(i*g.mss); p.seq != want || len(p.payload) != g.mss {
			t.Errorf("segment %d: seq %d with %d bytes, want seq %d with %d", i, p.seq, len(p.payload), want, g.mss)
		}
	}
}

// udpPacket is a lone IPv4 UDP packet from the injector to the Device's
// side, with a zero virtio header.
func udpPacket(id uint16) []byte {
	b := make([]byte, virtioNetHdrLen+20+8+32)
	p := b[virtioNetHdrLen:]
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], id)
	p[8], p[9] = 64, 17
	src, dst := injSrc4.As4(), devDst4.As4()
	copy(p[12:], src[:])
	copy(p[16:], dst[:])
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20], 0))
	binary.BigEndian.PutUint16(p[20:], 5353)
	binary.BigEndian.PutUint16(p[22:], 9)
	binary.BigEndian.PutUint16(p[24:], uint16(len(p)-20))
	binary.BigEndian.PutUint16(p[26:], checksum(p[20:], sum(p[12:20], 0)+17+uint32(len(p)-20)))
	return b
}
