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
// call each, as stock Nebula does; and once no packet has come for
// dropAfter, the offloaded path is dropped and its memory given back.
package tundev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
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

// dropAfter: the offloaded path of a device that carried no packet for
// this long is dropped, so a pod that carried bulk traffic once does not
// keep its memory (about 3.5 MiB: wireguard-go's tables and the buffers
// written) while idle; the next burst makes it again (a few hundred
// microseconds). A variable for the tests: a device takes it when it is
// opened.
var dropAfter = 5 * time.Second

// Device is a TUN device in the namespace it was opened in.
type Device struct {
	name      string
	networks  []netip.Prefix
	mtu       int
	txQueue   int
	dropAfter time.Duration
	log       *slog.Logger
	opts      Options // what was asked for, less what the kernel refused at open

	// The TUN's descriptor (non-blocking), with a virtio header of hdr
	// bytes in front of every packet (0 when no offload was asked for).
	// Waits are poll(2) on it and on wake, an eventfd, as in Nebula's own
	// device: a blocking poll costs one system call where Go's poller
	// parks and wakes goroutines, which for a packet at a time measured
	// 10% of the throughput (BenchmarkDataPlane, plain against stock).
	fd   int
	wake int // eventfd: written by Close and by a writer that saw a burst
	hdr  int
	// rmu is held by the reader for its whole read, wmu (shared) by each
	// writer: Close takes both before closing fd, so no read or write ever
	// reaches a descriptor number the process has reused.
	rmu  sync.Mutex
	wmu  sync.RWMutex
	rhdr [virtioNetHdrLen]byte // the reader's header (under rmu)

	rburst    burst       // the reader's (under rmu)
	splitting atomic.Bool // the kernel hands over super-packets (set by the reader)
	quiet     int         // reads in a row without TCP while splitting (under rmu)
	// drain counts the reads still to go through the offloaded path once
	// the kernel was told to stop handing over super-packets: those
	// already queued (at most a queue's worth) are split, not lost. Zero
	// once a read finds the queue empty. Under rmu.
	drain int
	// offloadFlags are what the splitter asks TUNSETOFFLOAD for.
	offloadFlags int
	bmu          sync.Mutex
	wburst       burst

	wantUp atomic.Bool               // a burst was seen: the reader turns the offloads on
	up     atomic.Pointer[offloaded] // the offloaded path, while on
	// lastWrite is when a packet was last written on the offloaded path
	// (nanotime): the reader drops the path after dropAfter without reads
	// or writes. On a cache line of its own: the writer stores it per
	// packet, the reader reads the fields around it per packet.
	_         [64]byte
	lastWrite atomic.Int64
	_         [56]byte
	refused   atomic.Bool // the kernel refused the offloads: plain for good
	mu        sync.Mutex  // upgrade against Close
	closed    atomic.Bool
}

// offloaded is the path through wireguard-go's device, on a duplicate of
// the descriptor.
type offloaded struct {
	stop func() error // closes wireguard-go's device
	r    *reader
	w    *writer
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
	d := &Device{name: name, networks: networks, mtu: mtu, txQueue: txQueue, dropAfter: dropAfter, log: log, opts: opts}
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
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tundev: %s: eventfd: %w", name, err)
	}
	d.fd, d.wake = fd, wake
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
	file, err := d.unpolledDup()
	if err != nil {
		return nil, err
	}
	// wireguard-go's device from a file of ours is the one that watches
	// the link (a netlink socket and two goroutines while the path
	// lasts), so it is made in the interface's namespace; its link events
	// are of no use to Nebula and are drained.
	var tun wgtun.Device
	err = d.inOwnNetns(func() (err error) {
		tun, err = wgtun.CreateTUNFromFile(file, d.mtu)
		if err == nil && !d.opts.Read {
			// wireguard-go turned the offloads on; writes with a
			// virtio header stay possible without, the kernel just
			// does not hand over super-packets. Those it queued
			// meanwhile are drained through the splitter (upgrade).
			err = setOffloadFd(d.fd, 0)
			if err != nil {
				tun.Close()
			}
		}
		return err
	})
	if err != nil {
		file.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-tun.Events():
			case <-done:
				return
			}
		}
	}()
	stop := func() error {
		err := tun.Close()
		close(done)
		return err
	}
	if tun.BatchSize() == 1 {
		stop()
		return nil, errors.New("no virtio header")
	}
	// What wireguard-go asked for: TCP's offloads, and UDP's where the
	// kernel has them; the splitter turns them off and on again.
	d.offloadFlags = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_USO4 | unix.TUN_F_USO6
	if d.opts.Read && setOffloadFd(d.fd, d.offloadFlags) != nil {
		d.offloadFlags = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
		if err := setOffloadFd(d.fd, d.offloadFlags); err != nil {
			stop()
			return nil, err
		}
	}
	r, err := newReader(tun, d.mtu)
	if err != nil {
		stop()
		return nil, err
	}
	w, err := newWriter(tun, d.writePlain, d.opts.Write, d.mtu, d.log.With("device", d.name))
	if err != nil {
		r.free()
		stop()
		return nil, err
	}
	return &offloaded{stop: stop, r: r, w: w}, nil
}

// unpolledDup is a duplicate of the TUN's descriptor as a file that Go's
// network poller does not watch. A file made from a non-blocking
// descriptor is registered with the poller's epoll (edge-triggered), and
// then every packet the kernel queues on the TUN wakes an idle poller
// thread for nothing, since the device waits in poll(2) itself: one
// epoll_pwait per packet of a UDP flood (474,000 in 5 s), which held the
// flood at 0.8x stock Nebula's. The open file's O_NONBLOCK is shared with
// d.fd, so it is cleared while the file is made; the file is read only
// once poll(2) has said a read will not block.
func (d *Device) unpolledDup() (*os.File, error) {
	if err := unix.SetNonblock(d.fd, false); err != nil {
		return nil, err
	}
	fd, err := unix.FcntlInt(uintptr(d.fd), unix.F_DUPFD_CLOEXEC, 0)
	var file *os.File
	if err == nil {
		file = os.NewFile(uintptr(fd), "/dev/net/tun")
	}
	if nerr := unix.SetNonblock(d.fd, true); nerr != nil {
		if file != nil {
			file.Close()
		}
		return nil, nerr
	}
	return file, err
}

// tunGetDevNetns is TUNGETDEVNETNS: a descriptor of the namespace the TUN
// device is in.
const tunGetDevNetns = 0x54e3

// inOwnNetns runs f on a thread in the interface's network namespace
// (the reader's is the process's), found from the TUN itself.
func (d *Device) inOwnNetns(f func() error) error {
	nsfd, err := unix.IoctlRetInt(d.fd, tunGetDevNetns)
	if err != nil {
		return fmt.Errorf("TUNGETDEVNETNS: %w", err)
	}
	defer unix.Close(nsfd)
	netns, err := ns.GetNS(fmt.Sprintf("/proc/self/fd/%d", nsfd))
	if err != nil {
		return err
	}
	defer netns.Close()
	return netns.Do(func(ns.NetNS) error { return f() })
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
	d.splitting.Store(d.opts.Read)
	if !d.opts.Read {
		// wireguard-go turned the offloads on before offload turned
		// them off again: what the kernel queued meanwhile may be
		// super-packets.
		d.drain = d.queueLen()
	}
	d.lastWrite.Store(nanotime())
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

// dropIfQuiet drops the offloaded path once no packet was read for
// dropAfter (the reader has waited since then with nothing to read) and
// none was written for as long: plain packets again, TUNSETOFFLOAD 0, and
// wireguard-go's device and the buffers given back. From the reader,
// between reads; the writers are held off meanwhile.
func (d *Device) dropIfQuiet(up *offloaded, waitingSince int64) {
	now := nanotime()
	if now-waitingSince < int64(d.dropAfter) || now-d.lastWrite.Load() < int64(d.dropAfter) || up.r.pending() {
		return
	}
	// Before the next plain read: no further super-packets, nor packets
	// whose checksums are left to the device. One queued since the wait
	// ended is read through the path first, and the drop waits for the
	// next quiet spell.
	d.stopSplitting()
	if ready, err := d.poll(unix.POLLIN, 0); ready || err != nil {
		return
	}
	d.wmu.Lock()
	quiet := nanotime()-d.lastWrite.Load() >= int64(d.dropAfter)
	d.mu.Lock()
	drop := quiet && !d.closed.Load() && d.up.Load() == up
	if drop {
		d.up.Store(nil)
	}
	d.mu.Unlock()
	d.wmu.Unlock()
	if !drop {
		return // a packet came, or Close has it
	}
	d.drain = 0 // the queue was empty with the offloads off
	d.quiet = 0
	d.rburst = burst{}
	d.bmu.Lock()
	d.wburst = burst{}
	d.bmu.Unlock()
	up.close() // writes what is queued first
	// Hand the tables' pages back now: an idle process allocates too
	// little to collect them for minutes.
	go debug.FreeOSMemory()
}

func (o *offloaded) close() error {
	o.w.close()
	err := o.stop()
	o.r.free()
	return err
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
	d.rmu.Lock()
	defer d.rmu.Unlock()
	for {
		if d.closed.Load() {
			return 0, os.ErrClosed
		}
		if up := d.up.Load(); up != nil && (d.splitting.Load() || d.drain > 0) {
			switch {
			case up.r.pending():
			case d.drain > 0:
				d.drain-- // read at once: an empty queue ends the drain
			default:
				// Wait here: wireguard-go's file is not the poller's.
				since := nanotime()
				ready, err := d.poll(unix.POLLIN, d.dropAfter)
				if err != nil {
					return 0, err
				}
				if !ready {
					d.dropIfQuiet(up, since)
					continue
				}
			}
			n, err := up.r.read(p)
			if err == errAgain {
				d.drain = 0
				continue
			}
			if err == nil && d.splitting.Load() {
				d.watchSplitting(p[:n], up.r.n)
			}
			return n, err
		}
		if d.wantUp.Load() {
			d.upgrade()
			continue
		}
		var n int
		var err error
		if d.hdr == 0 {
			n, err = unix.Read(d.fd, p)
		} else {
			n, err = unix.Readv(d.fd, [][]byte{d.rhdr[:], p})
		}
		switch {
		case err == unix.EAGAIN:
			up, since := d.up.Load(), nanotime()
			wait := time.Duration(-1)
			if up != nil {
				wait = d.dropAfter
			}
			ready, err := d.poll(unix.POLLIN, wait)
			if err != nil {
				return 0, err
			}
			if !ready && up != nil {
				d.dropIfQuiet(up, since)
			}
			continue
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, &os.PathError{Op: "read", Path: d.name, Err: err}
		}
		if d.hdr > 0 {
			n -= d.hdr
			if n < 0 || d.rhdr[1] != unix.VIRTIO_NET_HDR_GSO_NONE {
				// A super-packet the drain did not reach (it cannot
				// be split in p): lost, as a dropped packet would be.
				continue
			}
			if d.rhdr[0]&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 && !completeChecksum(p[:n], d.rhdr) {
				continue
			}
			// Only TCP turns offloads (and the splitter) on from this
			// side: it is what the kernel hands over as super-packets,
			// where a flood of UDP would pay for nothing the checksums
			// left to the device once offloads are on.
			if isTCP(p[:n]) && !d.refused.Load() && d.rburst.see(nanotime()) {
				switch {
				case d.up.Load() == nil:
					d.wantUp.Store(true)
				case d.opts.Read && setOffloadFd(d.fd, d.offloadFlags) == nil:
					d.splitting.Store(true)
					d.drain = 0
				}
			}
		}
		return n, nil
	}
}

// quietReads: after this many reads in a row of a single packet that is
// not TCP (a UDP flood, pings), the kernel is told to stop handing over
// super-packets, and with them packets whose checksums are left to the
// device, and the reader goes back to plain reads.
const quietReads = 64

// watchSplitting turns the splitter off when reads stop carrying TCP.
// Called by the reader with what it just handed out and its batch's size.
func (d *Device) watchSplitting(p []byte, batch int) {
	if batch > 1 || isTCP(p) {
		d.quiet = 0
		return
	}
	if d.quiet++; d.quiet >= quietReads {
		d.stopSplitting()
		d.quiet = 0
	}
}

// stopSplitting tells the kernel to stop handing over super-packets and
// packets whose checksums are left to the device, and has the reader
// drain what was queued before through the splitter. By the reader.
func (d *Device) stopSplitting() {
	if err := setOffloadFd(d.fd, 0); err != nil {
		d.log.Warn("TUN offloads could not be turned off", "device", d.name, "error", err)
		return
	}
	if d.splitting.Swap(false) {
		d.drain = d.queueLen()
	}
}

// queueLen is how many packets the kernel may hold queued on the TUN.
func (d *Device) queueLen() int {
	if d.txQueue > 0 {
		return d.txQueue
	}
	return 500 // the TUN's default (TUN_READQ_SIZE)
}

// completeChecksum fills in a transport checksum the kernel left to the
// device (a packet queued while offloads were on), as hdr says where.
func completeChecksum(p []byte, hdr [virtioNetHdrLen]byte) bool {
	start := int(binary.LittleEndian.Uint16(hdr[6:]))
	at := start + int(binary.LittleEndian.Uint16(hdr[8:]))
	if at+2 > len(p) {
		return false
	}
	// The field holds the pseudo-header's sum; the sum over the rest,
	// that field included, completes it.
	acc := uint32(0)
	b := p[start:]
	for len(b) >= 2 {
		acc += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	binary.BigEndian.PutUint16(p[at:], ^uint16(acc))
	return true
}

func setOffloadFd(fd, flags int) error { return unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, flags) }

// poll waits until fd is ready for events or wake is written, for at
// most wait (forever if negative), and reports whether fd is ready. A
// wake-up that is not a close is taken (the eventfd read back to zero) and
// reported as not ready, as the end of the wait is: the caller looks again.
func (d *Device) poll(events int16, wait time.Duration) (bool, error) {
	const problem = unix.POLLHUP | unix.POLLNVAL | unix.POLLERR
	fds := []unix.PollFd{{Fd: int32(d.fd), Events: events}, {Fd: int32(d.wake), Events: unix.POLLIN}}
	ms := -1
	if wait >= 0 {
		ms = int(wait.Milliseconds())
	}
	for {
		_, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, &os.PathError{Op: "poll", Path: d.name, Err: err}
		}
		break
	}
	switch {
	case d.closed.Load():
		return false, os.ErrClosed
	case fds[0].Revents&problem != 0:
		// The interface was deleted under the device.
		return false, &os.PathError{Op: "poll", Path: d.name, Err: unix.EBADFD}
	}
	if fds[1].Revents&unix.POLLIN != 0 {
		d.drainWake()
	}
	return fds[0].Revents&events != 0, nil
}

// drainWake reads the eventfd's count back to zero (a writer's wake-up).
func (d *Device) drainWake() {
	var b [8]byte
	unix.Read(d.wake, b[:])
}

func (d *Device) kick() {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	unix.Write(d.wake, b[:])
}

func isTCP(p []byte) bool {
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		return p[9] == unix.IPPROTO_TCP
	case len(p) >= 40 && p[0]>>4 == 6:
		return p[6] == unix.IPPROTO_TCP
	}
	return false
}

// Write hands one packet to the kernel: on the offloaded path it returns
// once the packet is queued or written (a write the kernel refuses is
// logged, as a lost packet).
func (d *Device) Write(p []byte) (int, error) {
	// Shared with the other writers; the reader takes it alone to drop
	// the offloaded path, and Close to close the descriptor.
	d.wmu.RLock()
	defer d.wmu.RUnlock()
	if up := d.up.Load(); up != nil {
		d.lastWrite.Store(nanotime())
		return up.w.write(p)
	}
	if d.hdr > 0 && !d.refused.Load() {
		d.bmu.Lock()
		b := d.wburst.see(nanotime())
		d.bmu.Unlock()
		if b && !d.wantUp.Swap(true) {
			d.kick() // the reader turns the offloads on between two reads
		}
	}
	return d.writePlain(p)
}

// writePlain writes one packet with a system call of its own, behind a
// zero virtio header if the device has one. The caller holds wmu, or is
// the offloaded path's flusher, which Close ends before the descriptor
// goes.
func (d *Device) writePlain(p []byte) (int, error) {
	for {
		if d.closed.Load() {
			return 0, os.ErrClosed
		}
		var n int
		var err error
		if d.hdr == 0 {
			n, err = unix.Write(d.fd, p)
		} else {
			n, err = unix.Writev(d.fd, [][]byte{zeroHdr[:], p})
			n -= d.hdr
		}
		switch {
		case err == unix.EAGAIN:
			if _, err := d.poll(unix.POLLOUT, -1); err != nil {
				return 0, err
			}
		case err == unix.EINTR:
		case err != nil:
			return 0, &os.PathError{Op: "write", Path: d.name, Err: err}
		default:
			return n, nil
		}
	}
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
	// One netlink socket for the whole configuration: the package's
	// functions open and bind one per request, six of them here, each a
	// few system calls more on every pod's start.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("tundev: netlink: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(d.name)
	if err != nil {
		return fmt.Errorf("tundev: %s: %w", d.name, err)
	}
	if err := h.LinkSetMTU(link, d.mtu); err != nil {
		return fmt.Errorf("tundev: %s: MTU %d: %w", d.name, d.mtu, err)
	}
	if d.txQueue > 0 {
		if err := h.LinkSetTxQLen(link, d.txQueue); err != nil {
			return fmt.Errorf("tundev: %s: transmit queue %d: %w", d.name, d.txQueue, err)
		}
	}
	const addrGenModeNone = 1
	if err := h.LinkSetIP6AddrGenMode(link, addrGenModeNone); err != nil {
		d.log.Warn("could not turn off link-local address generation", "device", d.name, "error", err)
	}
	if err := addAddresses(h, link, d.networks); err != nil {
		return fmt.Errorf("tundev: %s: %w", d.name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
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
	// Wake every poll, then wait for the reader and the writers to leave
	// before the descriptors go.
	d.kick()
	var err error
	if up != nil {
		err = up.close() // ends a read inside wireguard-go's device
	}
	d.rmu.Lock()
	d.wmu.Lock()
	err = errors.Join(err, unix.Close(d.fd))
	unix.Close(d.wake)
	d.wmu.Unlock()
	d.rmu.Unlock()
	return err
}

// addAddresses adds the networks' addresses to link, the IPv6 ones without
// duplicate address detection: usable (not tentative) at once, link down or
// up. A route from a tentative address is refused (EINVAL), and Nebula's
// own device slept 100 ms on that (8 of 100 pod starts, issue 29).
func addAddresses(h *netlink.Handle, link netlink.Link, networks []netip.Prefix) error {
	for _, p := range networks {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrReplace(link, a); err != nil {
			return fmt.Errorf("address %s: %w", p, err)
		}
	}
	return nil
}
