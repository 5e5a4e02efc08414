// Package tundev is the pod's TUN device for Nebula, with the kernel's
// segmentation offloads.
//
// Stock Nebula reads and writes one IP packet per system call. This device
// opens the TUN with IFF_VNET_HDR and TUNSETOFFLOAD (TSO4, TSO6, checksum
// offload and, where the kernel has it, USO), so that:
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
// one-packet calls to its batches.
package tundev

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

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

// Device is a TUN device in the namespace it was opened in.
type Device struct {
	name     string
	networks []netip.Prefix
	mtu      int
	txQueue  int
	log      *slog.Logger

	tun     wgtun.Device
	vnetHdr bool // the kernel took IFF_VNET_HDR and TUNSETOFFLOAD
	r       *reader
	w       *writer
	closed  atomic.Bool
}

// Open creates the TUN device name in the calling thread's network
// namespace. If the kernel refuses the offloads the device falls back to
// plain packets (logged once). mtu is the interface's MTU and txQueue its
// transmit queue in packets (0 leaves the kernel's).
func Open(name string, mtu, txQueue int, networks []netip.Prefix, opts Options, log *slog.Logger) (*Device, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{name: name, networks: networks, mtu: mtu, txQueue: txQueue, log: log}
	if opts.Read || opts.Write {
		tun, err := open(name, true)
		if err == nil {
			d.tun, d.vnetHdr = tun, true
		} else {
			log.Warn("TUN offloads refused by the kernel; using plain packets", "device", name, "error", err)
		}
	}
	if d.tun == nil {
		tun, err := open(name, false)
		if err != nil {
			return nil, err
		}
		d.tun = tun
		opts = Options{}
	}
	if d.vnetHdr && !opts.Read {
		// Writes with a virtio header stay possible; the kernel just
		// stops handing over super-packets.
		if err := setOffload(d.tun, 0); err != nil {
			d.tun.Close()
			return nil, fmt.Errorf("tundev: %s: %w", name, err)
		}
	}
	r, err := newReader(d.tun, d.vnetHdr && opts.Read, mtu)
	if err != nil {
		d.tun.Close()
		return nil, fmt.Errorf("tundev: %s: %w", name, err)
	}
	w, err := newWriter(d.tun, d.vnetHdr, opts.Write, mtu, log.With("device", name))
	if err != nil {
		r.free()
		d.tun.Close()
		return nil, fmt.Errorf("tundev: %s: %w", name, err)
	}
	d.r, d.w = r, w
	return d, nil
}

// open makes the TUN device with or without the virtio header; wireguard-go
// sets the offloads it finds the header on.
func open(name string, vnetHdr bool) (wgtun.Device, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tundev: /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tundev: %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if vnetHdr {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tundev: create %s: %w", name, err)
	}
	// Unmonitored: Nebula does not need wireguard-go's link events, and
	// the monitor's goroutines and netlink socket would cost every pod.
	tun, _, err := wgtun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tundev: %s: %w", name, err)
	}
	if vnetHdr && tun.BatchSize() == 1 {
		tun.Close()
		return nil, fmt.Errorf("tundev: %s: no virtio header", name)
	}
	return tun, nil
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

// Offloads reports which halves are on: what Open was asked for, less what
// the kernel refused, less write coalescing once the kernel refused a
// coalesced write.
func (d *Device) Offloads() Options {
	return Options{Read: d.r.offload, Write: d.w.coalescing()}
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

// Read returns the next packet the kernel sent into the interface.
func (d *Device) Read(p []byte) (int, error) { return d.r.read(p) }

// Write queues one packet for the kernel. It returns once the packet is
// copied; a write the kernel refuses is logged, as a lost packet.
func (d *Device) Write(p []byte) (int, error) { return d.w.write(p) }

// Close stops the flusher and closes the device (which removes the
// interface).
func (d *Device) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	d.w.close()
	err := d.tun.Close()
	d.r.free()
	return err
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
