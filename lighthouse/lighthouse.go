// Package lighthouse runs a Nebula lighthouse and relay for VMs: it enrols with a
// join token, gets its fixed overlay IP and name from the manifest, and serves.
package lighthouse

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/ca/api"
)

// Options configure a lighthouse.
type Options struct {
	Token      string
	ListenPort int
	// Device names the lighthouse's own TUN interface; "" runs without one
	// (a lighthouse needs none to serve).
	Device  string
	Version string
}

// Run enrols and serves until ctx is done. ready is called once Nebula is up.
func Run(ctx context.Context, log *slog.Logger, c *api.Client, o Options, ready func()) error {
	e, err := enrol.Lighthouse(ctx, c, o.Token)
	if err != nil {
		return fmt.Errorf("lighthouse: %w", err)
	}
	log.Info("enrolled", "name", e.Name, "ip", e.IP, "notAfter", e.NotAfter)
	cfg, err := tunnel.Config(e.EnrolResponse, e.PrivateKey, tunnel.Options{Device: o.Device, ListenPort: o.ListenPort, Lighthouse: true})
	if err != nil {
		return err
	}
	return tunnel.Run(ctx, log, cfg, o.Version, ready, "")
}
