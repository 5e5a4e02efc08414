// Package lighthouse runs a Nebula lighthouse and relay for VMs: it enrols with a
// join token, gets its fixed overlay IP and name from the manifest, and serves.
package lighthouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/agent/follow"
	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/internal/retry"
	"github.com/sealmesh/sealmesh/jointoken"
)

// Options configure a lighthouse.
type Options struct {
	Token      string
	ListenPort int
	// ListenHost is the address Nebula binds ("": every address).
	ListenHost string
	// Device names the lighthouse's own TUN interface; "" runs without one
	// (a lighthouse needs none to serve).
	Device  string
	Version string
	// DNS is the ip:port to answer DNS for host names on; "" serves none.
	DNS string
	// Follower reads the manifest (refreshing the client's trust in
	// coordinators); Run runs it. nil: renewals only on the certificate's
	// schedule.
	Follower *follow.Follower
	// Certificate, when set, is told the end of each certificate Nebula
	// runs with (for readiness and the expiry gauge).
	Certificate func(notAfter time.Time)
}

// instance names the lighthouse's Nebula in its tunnel host.
const instance = "lighthouse"

// Run enrols and serves until ctx is done. ready is called once Nebula is up.
// Nebula runs in a tunnel host in this process with one instance, reached on
// the same control protocol as the agent's pods: the certificate is renewed
// (same key, whose possession the instance proves) two thirds of the way to
// its expiry, and whenever the manifest changes (revocations, lighthouses),
// through Nebula's reload: relayed and direct tunnels stay up.
func Run(ctx context.Context, log *slog.Logger, c *api.Client, o Options, ready func()) error {
	// Before it is sent anywhere: the client is pinned to the token's mesh
	// for good, renewals included.
	tok, err := jointoken.Parse(o.Token)
	if err != nil {
		return fmt.Errorf("lighthouse: %w", err)
	}
	c = c.ExpectingMesh(tok.MeshID)
	e, err := enrol.Join(ctx, c, o.Token)
	if err != nil {
		return fmt.Errorf("lighthouse: %w", err)
	}
	log.Info("enrolled", "name", e.Name, "ip", e.IP, "notAfter", e.NotAfter)
	opts := nebulaconfig.Options{Device: o.Device, ListenPort: o.ListenPort, ListenHost: o.ListenHost, Lighthouse: true, DNS: o.DNS}
	dir, err := os.MkdirTemp("", "sealmesh-lighthouse-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	control := filepath.Join(dir, "control.sock")

	hctx, stop := context.WithCancel(ctx)
	up := make(chan struct{})
	served := make(chan error, 1)
	go func() { served <- tunnel.Serve(hctx, log, control, o.Version, func() { close(up) }) }()
	defer func() {
		stop()
		<-served // Nebula has stopped when Run returns
	}()
	select {
	case <-up:
	case err := <-served:
		served <- err
		return err
	}
	cfg := nebulaconfig.Config(e.EnrolResponse, e.PrivateKey, opts)
	if _, err := tunnel.AddInstance(ctx, control, instance, &tunnel.AddRequest{Config: cfg}); err != nil {
		return fmt.Errorf("lighthouse: %w", err)
	}
	if o.Follower != nil {
		go o.Follower.Run(hctx)
	}
	if o.Certificate != nil {
		o.Certificate(e.NotAfter)
	}
	ready()
	return keep(ctx, log, c, e.EnrolResponse, o, opts, control)
}

// keep keeps the lighthouse's certificate and rules current until ctx ends,
// and reports Nebula stopping by itself.
func keep(ctx context.Context, log *slog.Logger, c *api.Client, cur *api.EnrolResponse, o Options, opts nebulaconfig.Options, control string) error {
	f := o.Follower
	at := enrol.RenewAt(time.Now(), cur.NotAfter)
	pub, err := publicKey(cur)
	if err != nil {
		return err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	fails := retry.New(log, "renewal", retry.DefaultBackoff)
	var retryAt time.Time // after a failed renewal, not before
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := tunnel.Instances(lctx, control)
		cancel()
		if err == nil && !slices.ContainsFunc(list, func(in tunnel.InstanceInfo) bool { return in.ID == instance }) {
			return errors.New("lighthouse: nebula stopped")
		}
		// Renewed two thirds of the way to expiry, or as soon as the
		// manifest it was issued under is no longer the current one.
		if time.Now().Before(retryAt) || time.Now().Before(at) && (f == nil || f.Head() == "" || f.Head() == cur.Head) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		key := enrol.Key{Public: pub, Prove: func(possessionKey, nonce []byte) ([]byte, error) {
			return tunnel.ProveInstance(rctx, control, instance, &tunnel.ProveRequest{PossessionKey: possessionKey, Nonce: nonce})
		}}
		// By its certificate, not the token: a rotated or revoked token
		// does not stop a running lighthouse.
		e, err := enrol.RenewCertificate(rctx, c, cur.Certificate, key)
		if err == nil {
			err = tunnel.UpdateInstance(rctx, control, instance, nebulaconfig.Config(e, nil, opts))
		}
		cancel()
		if err != nil {
			// Backing off, one warning per kind of failure (it was one
			// line a second).
			retryAt = time.Now().Add(fails.Failed(err))
			continue
		}
		fails.Succeeded()
		cur, at = e, enrol.RenewAt(time.Now(), e.NotAfter)
		if o.Certificate != nil {
			o.Certificate(e.NotAfter)
		}
		log.Info("certificate renewed", "notAfter", e.NotAfter, "head", e.Head)
	}
}

// publicKey is the public key of the enrolment's certificate.
func publicKey(e *api.EnrolResponse) ([]byte, error) {
	crt, _, err := cert.UnmarshalCertificateFromPEM([]byte(e.Certificate))
	if err != nil {
		return nil, fmt.Errorf("lighthouse: its certificate: %w", err)
	}
	return crt.PublicKey(), nil
}
