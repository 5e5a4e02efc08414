package tundev

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sealmesh/sealmesh/internal/testenv"
	"github.com/sealmesh/sealmesh/test/netlab"
)

// Issue 29: Nebula's device adds its addresses to the TUN link while it is
// down, then brings it up and sets a route from each. An IPv6 address is
// tentative until the kernel's address work has run; a route from a
// tentative address is refused, and Nebula sleeps 100 ms before trying
// again (8 of 100 pod starts in BenchmarkCNILatency). On a TUN device that
// work only lags; on a veth (duplicate address detection for real, about a
// second) the same refusal is certain, which makes it testable: the address
// added as Nebula adds it is tentative and its route refused, the one
// addAddresses adds is neither.
func TestOverlayAddressesNeverTentative(t *testing.T) {
	testenv.RequireRoot(t)
	lab := newLab(t, "smdad")
	n, err := lab.NS("pod")
	if err != nil {
		t.Fatal(err)
	}
	overlay := netip.MustParsePrefix("fd42:42::7/64")
	tentative := func(link netlink.Link) (bool, error) {
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return false, err
		}
		for _, a := range addrs {
			if a.IP.Equal(overlay.Addr().AsSlice()) {
				return a.Flags&unix.IFA_F_TENTATIVE != 0, nil
			}
		}
		return false, fmt.Errorf("%s not on %s", overlay, link.Attrs().Name)
	}
	// As Nebula does it: an address added to a down link, no flags.
	nebulaAdd := func(link netlink.Link) error {
		return netlink.AddrReplace(link, &netlink.Addr{IPNet: &net.IPNet{IP: overlay.Addr().AsSlice(), Mask: net.CIDRMask(64, 128)}})
	}
	err = n.Do(func() error {
		for _, tc := range []struct {
			name   string
			noDAD  bool
			before bool // tentative on the down link
		}{
			{"plain", false, true},
			{"nodad", true, false},
		} {
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: tc.name}, PeerName: tc.name + "-peer"}); err != nil {
				return err
			}
			link, err := netlink.LinkByName(tc.name)
			if err != nil {
				return err
			}
			add := nebulaAdd
			if tc.noDAD {
				add = func(link netlink.Link) error {
					return addAddresses(&netlink.Handle{}, link, []netip.Prefix{netip.MustParsePrefix("10.42.0.7/16"), overlay})
				}
			}
			if err := add(link); err != nil {
				return err
			}
			if got, err := tentative(link); err != nil || got != tc.before {
				return fmt.Errorf("%s: tentative on the down link: %v (%v), want %v", tc.name, got, err, tc.before)
			}
			for _, name := range []string{tc.name + "-peer", tc.name} {
				l, err := netlink.LinkByName(name)
				if err == nil {
					err = netlink.LinkSetUp(l)
				}
				if err != nil {
					return err
				}
			}
			// Nebula's next step: a route from the address, at once.
			r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: &net.IPNet{IP: overlay.Masked().Addr().AsSlice(), Mask: net.CIDRMask(64, 128)},
				Src: overlay.Addr().AsSlice(), Scope: unix.RT_SCOPE_LINK, Protocol: unix.RTPROT_KERNEL, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST}
			err = netlink.RouteReplace(r)
			switch {
			case tc.noDAD && err != nil:
				return fmt.Errorf("%s: route from the overlay address right after the link came up: %w", tc.name, err)
			case !tc.noDAD && err == nil:
				return fmt.Errorf("%s: a route from a tentative address was accepted: the kernel no longer refuses it, and this test shows nothing", tc.name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func newLab(t testing.TB, prefix string) *netlab.Lab {
	lab := netlab.New(fmt.Sprintf("%s%d", prefix, os.Getpid()%100000))
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return lab
}
