package tunnel

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/slackhq/nebula"
	"github.com/slackhq/nebula/config"
	"github.com/slackhq/nebula/overlay"
)

// Run runs Nebula with cfg in the calling process until ctx is done. ready is
// called once the interface is up and Nebula is serving.
func Run(ctx context.Context, log *slog.Logger, cfg []byte, version string, ready func()) error {
	c := config.NewC(log)
	if err := c.LoadString(string(cfg)); err != nil {
		return fmt.Errorf("tunnel: load config: %w", err)
	}
	ctrl, err := nebula.Main(c, false, version, log, overlay.NewDeviceFromConfig)
	if err != nil {
		return fmt.Errorf("tunnel: start nebula: %w", err)
	}
	if err := ctrl.Start(); err != nil {
		return fmt.Errorf("tunnel: start nebula: %w", err)
	}
	if ready != nil {
		ready()
	}
	select {
	case <-ctx.Done():
		ctrl.Stop()
		return nil
	case <-ctrl.Context().Done():
		// Nebula stopped by itself (a fatal reader error): report it.
		if err := ctrl.Wait(); err != nil {
			return fmt.Errorf("tunnel: nebula stopped: %w", err)
		}
		return fmt.Errorf("tunnel: nebula stopped")
	}
}
