package node

import (
	"errors"
	"fmt"
	"os"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// LinuxNetns is Netns through netlink, entering each namespace.
type LinuxNetns struct{}

// MTU is the MTU of the pod's default-route link.
func (LinuxNetns) MTU(netnsPath string) (int, error) {
	mtu := 0
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, rt := range routes {
			if rt.Dst == nil || rt.Dst.IP.IsUnspecified() {
				l, err := netlink.LinkByIndex(rt.LinkIndex)
				if err != nil {
					return err
				}
				mtu = l.Attrs().MTU
				return nil
			}
		}
		return errors.New("no default route: run sealmesh-cni after the primary plugin")
	})
	if err != nil {
		return 0, fmt.Errorf("pod netns %s: %w", netnsPath, err)
	}
	return mtu, nil
}

// HasAddress checks ifName in netnsPath carries addr.
func (LinuxNetns) HasAddress(netnsPath, ifName, addr string) error {
	return ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		l, err := netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("interface %s in %s: %w", ifName, netnsPath, err)
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, ad := range addrs {
			if ad.IPNet.String() == addr {
				return nil
			}
		}
		return fmt.Errorf("interface %s in %s lacks %s", ifName, netnsPath, addr)
	})
}

// Exists reports whether the namespace's path is still there.
func (LinuxNetns) Exists(netnsPath string) bool {
	_, err := os.Stat(netnsPath)
	return err == nil
}
