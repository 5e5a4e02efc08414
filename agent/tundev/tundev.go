// Package tundev is the pod's TUN device for Nebula, with the kernel's
// segmentation offloads.
//
// Stock Nebula reads and writes one IP packet per system call. This device
// opens the TUN with IFF_VNET_HDR and, once bulk traffic shows up, sets
// TUNSETOFFLOAD (TSO4, TSO6, checksum offload and, where the kernel has it,
// USO), so that:
//
//   - the kernel hands over TCP (and UDP) super-packets of up to 64 KiB,
//     split here into MTU-sized packets that Nebula takes one by one: one
//     read per super-packet instead of one per packet;
//   - packets Nebula writes are queued and written by a flusher that takes
//     whatever is waiting when it runs, coalescing consecutive segments of
//     one flow into one GSO write the way the kernel's GRO would; a packet
//     that finds the flusher idle is written at once, so an idle flow pays
//     no added latency.
//
// The segmentation and coalescing rules are wireguard-go's (tun package:
// gsoSplit on read, handleGRO on write); this package adapts Nebula's
// one-packet calls to its batches. wireguard-go's device costs about 2 MB of
// heap (its coalescing tables, sized for batches of 128) and this package's
// buffers; an idle pod pays none of it: until a burst of packets comes
// (upgradeAfter of them, each within burstGap of the one before) the device
// reads and writes plain packets behind a zero virtio header, one system
// call each, as stock Nebula does.
package tundev

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Options choose the offloads; the zero value turns both off (plain
// packets, as stock Nebula). Both halves are separate so that each one's
// share can be measured (BenchmarkDevice).
type Options struct {
	Read  bool // take super-packets from the kernel and split them
	Write bool // coalesce written segments into GSO writes
}

// Offload is both halves.
var Offload = Options{Read: true, Write: true}

// upgradeAfter: this many packets in a row, each within burstGap of the one
// before, turn the offloads on.
const upgradeAfter = 16

// Device is a TUN device in the namespace it was opened in.
type Device struct {
	name     string
	networks []netip.Prefix
	mtu      int
	txQueue  int
	log      *slog.Logger
	opts     Options // what was asked for, less what the kernel refused at open

	// The plain path: the TUN's descriptor, with a virtio header of hdr
	// bytes in front of every packet (0 when no offload was asked for).
	file *os.File
	rc   syscall.RawConn
	hdr  int
	rhdr [virtioNetHdrLen]byte // the reader's header (one reader at a time: the file's lock)

	rburst burst // the reader's (one reader at a time)
	wmu    sync.Mutex
	wburst burst

	wantUp  atomic.Bool               // a burst was seen: the reader turns the offloads on
	up      atomic.Pointer[offloaded] // the offloaded path, once on
	refused atomic.Bool               // the kernel refused the offloads: plain for good
	mu      sync.Mutex                // upgrade against Close
	closed  atomic.Bool
}

// offloaded is the path through wireguard-go's device, on a duplicate of
// the descriptor.
type offloaded struct {
	tun wgtun.Device
	r   *reader
	w   *writer
}

// zeroHdr is the virtio header of a plain packet (read only).
var zeroHdr [virtioNetHdrLen]byte

// Open creates the TUN device name in the calling thread's network
// namespace. If the kernel refuses the offloads the device falls back to
// plain packets (logged once). mtu is the interface's MTU and txQueue its
// transmit queue in packets (0 leaves the kernel's).
func Open(name string, mtu, txQueue int, networks []netip.Prefix, opts Options, log *slog.Logger) (*Device, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{name: name, networks: networks, mtu: mtu, txQueue: txQueue, log: log, opts: opts}
	var fd int
	var err error
	if opts.Read || opts.Write {
		fd, err = open(name, true)
		if err == nil {
			d.hdr = virtioNetHdrLen
		} else {
			log.Warn("TUN offloads refused by the kernel; using plain packets", "device", name, "error", err)
			d.opts = Options{}
		}
	}
	if d.hdr == 0 {
		if fd, err = open(name, false); err != nil {
			return nil, err
		}
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tundev: %s: %w", name, err)
	}
	d.file = os.NewFile(uintptr(fd), "/dev/net/tun")
	if d.rc, err = d.file.SyscallConn(); err != nil {
		d.file.Close()
		return nil, fmt.Errorf("tundev: %s: %w", name, err)
	}
	return d, nil
}

// open makes the TUN device with or without the virtio header.
func open(name string, vnetHdr bool) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("tundev: /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tundev: %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("tundev: create %s: %w", name, err)
	}
	return fd, nil
}

// offload makes the offloaded path on a duplicate of the descriptor:
// wireguard-go sets TUNSETOFFLOAD on it (the open file, so the plain path's
// descriptor sees it too: only the reader calls this, between reads).
func (d *Device) offload() (*offloaded, error) {
	var fd int
	var err error
	if cerr := d.rc.Control(func(f uintptr) { fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	// Unmonitored: Nebula needs none of wireguard-go's link events, and
	// the monitor's goroutines and netlink socket would cost every pod.
	tun, _, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if tun.BatchSize() == 1 {
		tun.Close()
		return nil, errors.New("no virtio header")
	}
	if !d.opts.Read {
		// Writes with a virtio header stay possible; the kernel just
		// does not hand over super-packets.
		if err := setOffload(tun, 0); err != nil {
			tun.Close()
			return nil, err
		}
	}
	r, err := newReader(tun, d.opts.Read, d.mtu)
	if err != nil {
		tun.Close()
		return nil, err
	}
	w, err := newWriter(tun, true, d.opts.Write, d.mtu, d.log.With("device", d.name))
	if err != nil {
		r.free()
		tun.Close()
		return nil, err
	}
	return &offloaded{tun: tun, r: r, w: w}, nil
}

// upgrade turns the offloads on, from the reader's goroutine.
func (d *Device) upgrade() {
	defer d.wantUp.Store(false)
	up, err := d.offload()
	if err != nil {
		d.refused.Store(true)
		d.log.Warn("TUN offloads refused by the kernel; using plain packets", "device", d.name, "error", err)
		return
	}
	d.mu.Lock()
	closed := d.closed.Load()
	if !closed {
		d.up.Store(up)
	}
	d.mu.Unlock()
	if closed {
		up.close()
	}
}

func (o *offloaded) close() error {
	o.w.close()
	err := o.tun.Close()
	o.r.free()
	return err
}

func setOffload(tun wgtun.Device, flags int) error {
	f, ok := tun.(interface{ File() *os.File })
	if !ok {
		return errors.New("no file")
	}
	sc, err := f.File().SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) { serr = unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, flags) }); err != nil {
		return err
	}
	return serr
}

// Offloads reports which halves are on or will be at the first burst: what
// Open was asked for, less what the kernel refused, less write coalescing
// once the kernel refused a coalesced write.
func (d *Device) Offloads() Options {
	if d.refused.Load() {
		return Options{}
	}
	o := d.opts
	if up := d.up.Load(); up != nil {
		o.Write = up.w.coalescing()
	}
	return o
}

// Read returns the next packet the kernel sent into the interface.
func (d *Device) Read(p []byte) (int, error) {
	for {
		if up := d.up.Load(); up != nil {
			return up.r.read(p)
		}
		if d.wantUp.Load() {
			d.upgrade()
			d.file.SetReadDeadline(time.Time{})
			continue
		}
		n, skip, err := d.readPlain(p)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // a writer saw a burst and woke the reader
		case err != nil && d.closed.Load():
			return 0, os.ErrClosed
		case err != nil:
			return 0, err
		case skip:
			continue
		}
		if d.hdr > 0 && !d.refused.Load() && d.rburst.see(nanotime()) {
			d.wantUp.Store(true)
		}
		return n, nil
	}
}

// readPlain reads one packet on the plain path. skip is a packet the plain
// path cannot take: one the kernel segmented for the offloaded path while
// the reader was switching over (a lost packet, once per device).
func (d *Device) readPlain(p []byte) (n int, skip bool, err error) {
	var serr error
	err = d.rc.Read(func(fd uintptr) bool {
		if d.hdr == 0 {
			n, serr = unix.Read(int(fd), p)
		} else {
			n, serr = unix.Readv(int(fd), [][]byte{d.rhdr[:], p})
		}
		return serr != unix.EAGAIN
	})
	if err != nil {
		return 0, false, err
	}
	if serr != nil {
		return 0, false, &os.PathError{Op: "read", Path: d.name, Err: serr}
	}
	if d.hdr > 0 {
		n -= d.hdr
		if n < 0 || d.rhdr[1] != unix.VIRTIO_NET_HDR_GSO_NONE || d.rhdr[0]&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
			return 0, true, nil
		}
	}
	return n, false, nil
}

// Write hands one packet to the kernel: on the offloaded path it returns
// once the packet is queued or written (a write the kernel refuses is
// logged, as a lost packet).
func (d *Device) Write(p []byte) (int, error) {
	if up := d.up.Load(); up != nil {
		return up.w.write(p)
	}
	if d.hdr > 0 && !d.refused.Load() {
		d.wmu.Lock()
		b := d.wburst.see(nanotime())
		d.wmu.Unlock()
		if b && !d.wantUp.Swap(true) {
			// Wake the reader, which turns the offloads on between
			// two reads.
			d.file.SetReadDeadline(time.Unix(1, 0))
		}
	}
	var n int
	var serr error
	err := d.rc.Write(func(fd uintptr) bool {
		if d.hdr == 0 {
			n, serr = unix.Write(int(fd), p)
		} else {
			n, serr = unix.Writev(int(fd), [][]byte{zeroHdr[:], p})
			n -= d.hdr
		}
		return serr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, &os.PathError{Op: "write", Path: d.name, Err: serr}
	}
	return n, nil
}

// burst counts packets that come close together.
type burst struct {
	last int64
	n    int
}

// see takes a packet's arrival and reports whether upgradeAfter have come
// in a row, each within burstGap of the one before.
func (b *burst) see(now int64) bool {
	if now-b.last <= int64(burstGap) {
		b.n++
	} else {
		b.n = 0
	}
	b.last = now
	return b.n >= upgradeAfter
}

// Activate configures the interface and brings it up: MTU, transmit queue,
// no link-local address, the overlay addresses (IPv6 ones without duplicate
// address detection, so they are usable at once: a TUN device has no
// neighbour to detect a duplicate on and the coordinator hands each address
// out once), then up. The kernel adds each network's route.
func (d *Device) Activate() error {
	link, err := netlink.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("tundev: %s: %w", d.name, err)
	}
	if err := netlink.LinkSetMTU(link, d.mtu); err != nil {
		return fmt.Errorf("tundev: %s: MTU %d: %w", d.name, d.mtu, err)
	}
	if d.txQueue > 0 {
		if err := netlink.LinkSetTxQLen(link, d.txQueue); err != nil {
			return fmt.Errorf("tundev: %s: transmit queue %d: %w", d.name, d.txQueue, err)
		}
	}
	const addrGenModeNone = 1
	if err := netlink.LinkSetIP6AddrGenMode(link, addrGenModeNone); err != nil {
		d.log.Warn("could not turn off link-local address generation", "device", d.name, "error", err)
	}
	if err := addAddresses(link, d.networks); err != nil {
		return fmt.Errorf("tundev: %s: %w", d.name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tundev: %s: up: %w", d.name, err)
	}
	return nil
}

// Name is the interface's name.
func (d *Device) Name() string { return d.name }

// Networks are the overlay networks the interface has addresses in.
func (d *Device) Networks() []netip.Prefix { return d.networks }

// Close stops the flusher and closes the device (which removes the
// interface).
func (d *Device) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.mu.Lock()
	up := d.up.Load()
	d.mu.Unlock()
	var err error
	if up != nil {
		err = up.close()
	}
	return errors.Join(err, d.file.Close())
}

// addAddresses adds the networks' addresses to link, the IPv6 ones without
// duplicate address detection: usable (not tentative) at once, link down or
// up. A route from a tentative address is refused (EINVAL), and Nebula's
// own device slept 100 ms on that (8 of 100 pod starts, issue 29).
func addAddresses(link netlink.Link, networks []netip.Prefix) error {
	for _, p := range networks {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, a); err != nil {
			return fmt.Errorf("address %s: %w", p, err)
		}
	}
	return nil
}
