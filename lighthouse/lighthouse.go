// Package lighthouse runs a Nebula lighthouse and relay for VMs: it enrols with a
// join token, gets its fixed overlay IP and name from the manifest, and serves.
package lighthouse

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/agent/follow"
	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/manifest"
)

// Options configure a lighthouse.
type Options struct {
	Token      string
	ListenPort int
	// Device names the lighthouse's own TUN interface; "" runs without one
	// (a lighthouse needs none to serve).
	Device  string
	Version string
	// Follower reads the manifest (refreshing the client's trust in
	// coordinators); Run runs it. nil: renewals only on the certificate's
	// schedule.
	Follower *follow.Follower
}

// Run enrols and serves until ctx is done. ready is called once Nebula is up.
// The certificate is renewed (same key) two thirds of the way to its expiry,
// and whenever the manifest changes (revocations, lighthouses), through
// Nebula's reload: relayed and direct tunnels stay up.
func Run(ctx context.Context, log *slog.Logger, c *api.Client, o Options, ready func()) error {
	// Before it is sent anywhere: the coordinator would refuse it too.
	if err := manifest.CheckJoinToken(o.Token); err != nil {
		return fmt.Errorf("lighthouse: %w", err)
	}
	e, err := enrol.Lighthouse(ctx, c, o.Token)
	if err != nil {
		return fmt.Errorf("lighthouse: %w", err)
	}
	log.Info("enrolled", "name", e.Name, "ip", e.IP, "notAfter", e.NotAfter)
	opts := tunnel.Options{Device: o.Device, ListenPort: o.ListenPort, Lighthouse: true}
	cfg, err := tunnel.Config(e.EnrolResponse, e.PrivateKey, opts)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sealmesh-lighthouse-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	control := filepath.Join(dir, "control.sock")
	// The key stays in this process, which proves its possession at
	// every renewal.
	key, err := enrol.InMemory(e.PrivateKey)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.Follower != nil {
		go o.Follower.Run(rctx)
	}
	go renew(rctx, log, c, o.Token, key, e.EnrolResponse, opts, control, o.Follower)
	return tunnel.Run(ctx, log, cfg, o.Version, ready, control)
}

// renew keeps the lighthouse's certificate and rules current.
func renew(ctx context.Context, log *slog.Logger, c *api.Client, token string, key enrol.Key, cur *api.EnrolResponse, opts tunnel.Options, control string, f *follow.Follower) {
	at := enrol.RenewAt(time.Now(), cur.NotAfter)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Renewed two thirds of the way to expiry, or as soon as the
		// manifest it was issued under is no longer the current one.
		if time.Now().Before(at) && (f == nil || f.Head() == "" || f.Head() == cur.Head) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		e, err := enrol.RenewLighthouse(rctx, c, token, key)
		if err == nil {
			var cfg []byte
			if cfg, err = tunnel.Config(e, nil, opts); err == nil {
				err = tunnel.Update(rctx, control, cfg)
			}
		}
		cancel()
		if err != nil {
			log.Error("renewal", "err", err)
			continue
		}
		cur, at = e, enrol.RenewAt(time.Now(), e.NotAfter)
		log.Info("certificate renewed", "notAfter", e.NotAfter, "head", e.Head)
	}
}
