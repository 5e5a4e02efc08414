package tunnel

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/slackhq/nebula/config"
	"github.com/slackhq/nebula/overlay"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// newDevice is Nebula's own TUN device, whose IPv6 overlay addresses are
// added before Nebula activates it, marked IFA_F_NODAD. Nebula adds them to
// the link while it is down and then brings it up: the kernel keeps each
// IPv6 address tentative until its address work runs, a route from a
// tentative address is refused (EINVAL), and Nebula then sleeps 100 ms and
// tries again. 8 of 100 pod starts paid that (BenchmarkCNILatency, issue
// 29). An address added with NODAD is never tentative; Nebula's own
// AddrReplace of it later changes nothing else. The overlay addresses are
// the coordinator's to hand out, unique by construction, and a TUN device
// has no neighbour to detect a duplicate on.
func newDevice(c *config.C, l *slog.Logger, vpnNetworks []netip.Prefix, routines int) (overlay.Device, error) {
	d, err := overlay.NewDeviceFromConfig(c, l, vpnNetworks, routines)
	if err != nil {
		return nil, err
	}
	return &device{Device: d}, nil
}

type device struct{ overlay.Device }

// Activate adds the IPv6 overlay addresses without DAD, then lets Nebula
// do the rest. Runs on Nebula's start thread, in the pod's namespace.
func (d *device) Activate() error {
	link, err := netlink.LinkByName(d.Name())
	var none netlink.LinkNotFoundError
	switch {
	case errors.As(err, &none):
		return d.Device.Activate() // no interface (tun.disabled): nothing to add to
	case err != nil:
		return fmt.Errorf("tunnel: %s: %w", d.Name(), err)
	}
	if err := addNoDAD(link, d.Networks()); err != nil {
		return fmt.Errorf("tunnel: %s: %w", d.Name(), err)
	}
	return d.Device.Activate()
}

// addNoDAD adds the IPv6 networks' addresses to link without duplicate
// address detection: usable (not tentative) at once, link down or up.
func addNoDAD(link netlink.Link, networks []netip.Prefix) error {
	for _, p := range networks {
		if !p.Addr().Is6() || p.Addr().Is4In6() {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)}, Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrReplace(link, a); err != nil {
			return fmt.Errorf("address %s: %w", p, err)
		}
	}
	return nil
}
