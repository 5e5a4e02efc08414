// Command sealmesh-lighthouse runs a Nebula lighthouse and relay enrolled with a join token.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/agent/follow"
	"github.com/sealmesh/sealmesh/api/attested"
	"github.com/sealmesh/sealmesh/internal/buildmetric"
	"github.com/sealmesh/sealmesh/internal/cli"
	"github.com/sealmesh/sealmesh/internal/health"
	"github.com/sealmesh/sealmesh/internal/logging"
	"github.com/sealmesh/sealmesh/lighthouse"
)

var version = "dev"

func command() *cobra.Command {
	var coordinator, policy, meshID, tokenFile, healthAddr, device, dns, listen string
	var logOpts logging.Options
	cmd := &cobra.Command{
		Use:   "sealmesh-lighthouse",
		Short: "Nebula lighthouse and relay, enrolled with a join token",
		Example: `  sealmesh-lighthouse --coordinator https://coordinator.example:7080 --coordinator-policy-file coordinator-policy.json \
    --mesh-id $SEALMESH_MESH_ID --token-file lighthouse.token --listen :4242 --dns 0.0.0.0:53`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logOpts.Logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			client, trust, err := attested.Client(coordinator, policy)
			if err != nil {
				return err
			}
			if meshID != "" {
				client = client.ExpectingMesh(meshID)
			}
			if dns != "" {
				if _, err := netip.ParseAddrPort(dns); err != nil {
					return fmt.Errorf("--dns %q: want ip:port, e.g. 10.0.0.5:53", dns)
				}
			}
			host, lport, err := cli.ParseListen("listen", listen)
			if err != nil {
				return err
			}
			tok, err := os.ReadFile(tokenFile)
			if err != nil {
				return fmt.Errorf("--token-file: %w", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			var ready atomic.Bool
			var notAfter atomic.Int64 // the running certificate's end, Unix seconds
			reg := prometheus.NewRegistry()
			reg.MustRegister(buildmetric.Collector("lighthouse", version),
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{
					Name: "sealmesh_lighthouse_certificate_expiry_timestamp_seconds",
					Help: "When the lighthouse's Nebula certificate expires (Unix seconds; 0 before enrolment).",
				}, func() float64 { return float64(notAfter.Load()) }))
			// Ready while Nebula runs with a certificate that has not
			// expired: an expired one serves no handshake.
			serving := func() error {
				switch end := notAfter.Load(); {
				case !ready.Load():
					return errors.New("not enrolled yet")
				case time.Now().Unix() >= end:
					return fmt.Errorf("certificate expired at %s and not renewed", time.Unix(end, 0).UTC().Format(time.RFC3339))
				}
				return nil
			}
			go func() {
				if err := health.Serve(ctx, healthAddr, serving, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})); err != nil {
					log.Error("health server", "err", err)
				}
			}()
			return lighthouse.Run(ctx, log, client, lighthouse.Options{
				Token: strings.TrimSpace(string(tok)), ListenHost: host, ListenPort: lport, Device: device, Version: version, DNS: dns,
				Follower:    &follow.Follower{Client: client, Trust: trust, Log: log},
				Certificate: func(end time.Time) { notAfter.Store(end.Unix()) },
			}, func() {
				ready.Store(true)
				log.Info("lighthouse serving", "listen", net.JoinHostPort(host, strconv.Itoa(lport)))
			})
		},
	}
	f := cmd.Flags()
	logOpts.AddFlags(f)
	f.StringVar(&coordinator, "coordinator", "https://127.0.0.1:7080", "coordinator URLs, comma-separated, or one whose DNS name has several addresses: https (attested TLS) or http (development); calls fail over between them")
	f.StringVar(&policy, "coordinator-policy-file", "", "what the coordinator must attest as: a file holding a JSON or YAML attestation block (meshctl sim-tee init --policy-out writes one)")
	cli.Rename(f, "coordinator-policy", "coordinator-policy-file")
	f.StringVar(&meshID, "mesh-id", os.Getenv("SEALMESH_MESH_ID"), "the mesh to join: a coordinator of another mesh is refused before the join token is sent (or $SEALMESH_MESH_ID)")
	f.StringVar(&tokenFile, "token-file", "", "file holding the join token (required)")
	f.StringVar(&listen, "listen", ":4242", "Nebula's UDP address, host:port; no host: every address")
	cli.RenamePort(f, "listen-port", "listen")
	f.StringVar(&device, "device", "", "TUN device for the lighthouse's own overlay IP; empty runs without one")
	f.StringVar(&dns, "dns", "", "ip:port to answer DNS on: the overlay IPs of the hosts this lighthouse knows, by certificate name (a pod is <name>.<namespace>); empty serves none")
	f.StringVar(&healthAddr, "health-listen", "127.0.0.1:7084", "address for /healthz, /readyz and /metrics")
	cli.Rename(f, "health-addr", "health-listen")
	cmd.MarkFlagRequired("token-file")
	cli.AddVersion(cmd, version)
	return cmd
}

func main() {
	if err := command().Execute(); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "sealmesh-lighthouse:", err)
		os.Exit(1)
	}
}
