package tunnel

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"

	"github.com/slackhq/nebula/config"
	"github.com/slackhq/nebula/overlay"
	"github.com/slackhq/nebula/routing"

	"github.com/sealmesh/sealmesh/agent/tundev"
)

// newDevice is the pod's interface for Nebula: sealmesh's own TUN device
// with the kernel's segmentation offloads (agent/tundev), configured from
// the same tun section Nebula reads. A tunnel without an interface
// (tun.disabled, a lighthouse) keeps Nebula's.
//
// Of Nebula's tun settings sealmesh's configuration uses dev, mtu and
// tx_queue; routes of Nebula's own (tun.routes, tun.unsafe_routes,
// tun.use_system_route_table) are refused rather than ignored.
func newDevice(c *config.C, l *slog.Logger, vpnNetworks []netip.Prefix, routines int) (overlay.Device, error) {
	if c.GetBool("tun.disabled", false) {
		return overlay.NewDeviceFromConfig(c, l, vpnNetworks, routines)
	}
	for _, k := range []string{"tun.routes", "tun.unsafe_routes", "tun.use_system_route_table"} {
		if c.IsSet(k) {
			return nil, fmt.Errorf("tunnel: %s is not supported by sealmesh's device", k)
		}
	}
	if routines != 1 {
		return nil, fmt.Errorf("tunnel: %d routines: sealmesh's device has one queue", routines)
	}
	name := c.GetString("tun.dev", "")
	if name == "" {
		return nil, errors.New("tunnel: tun.dev is empty")
	}
	d, err := tundev.Open(name, c.GetInt("tun.mtu", overlay.DefaultMTU), c.GetInt("tun.tx_queue", 500), vpnNetworks, tundev.Offload, l)
	if err != nil {
		return nil, err
	}
	return nebulaDevice{d}, nil
}

// nebulaDevice is what Nebula asks of a device beyond tundev's: no routes
// of its own and a single queue.
type nebulaDevice struct{ *tundev.Device }

func (nebulaDevice) RoutesFor(netip.Addr) routing.Gateways { return nil }
func (nebulaDevice) SupportsMultiqueue() bool              { return false }
func (nebulaDevice) NewMultiQueueReader() (io.ReadWriteCloser, error) {
	return nil, errors.New("tunnel: sealmesh's device has one queue")
}
