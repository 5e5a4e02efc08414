// Command sealmesh-coordinator serves enrolment for one mesh.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/google/go-sev-guest/verify/trust"
	tdxtrust "github.com/google/go-tdx-guest/verify/trust"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/attest/tee"
	"github.com/sealmesh/sealmesh/ca/cluster"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/store/etcdstore"
	"github.com/sealmesh/sealmesh/ca/store/kubestore"
	"github.com/sealmesh/sealmesh/internal/cli"
	"github.com/sealmesh/sealmesh/internal/health"
	"github.com/sealmesh/sealmesh/internal/logging"
	"github.com/sealmesh/sealmesh/internal/serve"
	"github.com/sealmesh/sealmesh/kube"
)

var version = "dev"

func command() *cobra.Command {
	var listen, healthAddr, stateDir, storeSpec, teeSpec string
	var tokens, amdKDS, intelPCS, simulatedCoordinators bool
	var ratePerSource float64
	var vcekCache, tdxCollateral, jwksFile string
	var peers, join, ownerKeys []string
	var gossipAddr, gossipAdvertise, name, apiURL, meshID string
	var logOpts logging.Options
	cmd := &cobra.Command{
		Use:   "sealmesh-coordinator",
		Short: "Attests workloads and issues their Nebula certificates",
		Example: `  # development: plain HTTP, state in files
  sealmesh-coordinator --store file:/tmp/sealmesh/store --state-dir /tmp/sealmesh/state --listen 127.0.0.1:7080
  # attested TLS from an SEV-SNP guest, three coordinators sharing etcd
  sealmesh-coordinator --tee snp --store etcd:10.0.0.5:2379 --gossip-addr 10.0.0.11:7946 --join 10.0.0.12:7946,10.0.0.13:7946`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logOpts.Logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			klog.SetSlogLogger(log) // client-go's messages in the same stream
			st, err := openStore(storeSpec)
			if err != nil {
				return err
			}
			var issuer attest.Issuer
			var sealingKey []byte
			if teeSpec != "" {
				if issuer, err = tee.Open(teeSpec, false); err != nil {
					return err
				}
				if s, ok := issuer.(attest.Sealer); ok {
					if sealingKey, err = s.SealingKey(); err != nil {
						return err
					}
				}
			}
			verifier := &attest.Verifier{}
			if vcekCache != "" {
				cache := &attest.CertCache{Dir: vcekCache}
				if amdKDS {
					cache.Next = trust.DefaultHTTPSGetter()
				}
				verifier.SNPCerts = cache
			} else if amdKDS {
				return errors.New("--amd-kds needs --vcek-cache: fetched certificates are kept there")
			}
			if tdxCollateral != "" {
				cache := &attest.CollateralCache{Dir: tdxCollateral}
				if intelPCS {
					cache.Next = tdxtrust.DefaultHTTPSGetter()
				}
				verifier.TDXCollateral = cache
			} else if intelPCS {
				return errors.New("--intel-pcs needs --tdx-collateral: fetched collateral is kept there")
			}
			if tokens {
				cfg, err := kube.RESTConfig()
				if err != nil {
					return fmt.Errorf("--kubernetes-tokens: credentials: %w", err)
				}
				cluster, err := kube.New(cfg)
				if err != nil {
					return err
				}
				cluster.JWKSFile = jwksFile
				if verifier.Tokens, err = attest.NewTokenVerifier(cmd.Context(), cluster); err != nil {
					return err
				}
			}
			if gossipAddr == "" && len(join) > 0 {
				return errors.New("--join needs --gossip-addr (this coordinator's gossip address)")
			}
			if apiURL == "" && gossipAddr != "" {
				if apiURL, err = defaultAPI(listen, gossipAdvertise, gossipAddr, issuer != nil); err != nil {
					return err
				}
			}
			owners, err := parseOwnerKeys(ownerKeys)
			if err != nil {
				return err
			}
			// Attested TLS: every handshake carries fresh evidence for the
			// client's nonce, bound to this process's TLS key; peers attest
			// back with evidence for this server's nonce.
			var as *atls.Server
			var tlsKey []byte
			if issuer != nil {
				if as, err = atls.NewServer(issuer, verifier.Verify); err != nil {
					return err
				}
				tlsKey = as.PublicKey()
			}
			var cl *cluster.Cluster
			c, err := coordinator.New(coordinator.Config{Version: version, TLSPublicKey: tlsKey, Owners: owners, Log: log, Store: st, StoreAddr: storeSpec, MeshID: meshID, StateDir: stateDir, SealingKey: sealingKey, Verifier: verifier, Issuer: issuer, Peers: peers,
				AllowSimulatedCoordinators: simulatedCoordinators, RatePerSource: ratePerSource,
				API: apiURL, Members: func() []api.Member {
					if cl == nil {
						return nil
					}
					return cl.Members()
				}})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if gossipAddr != "" {
				if cl, err = cluster.Start(ctx, cluster.Config{Name: name, Bind: gossipAddr, Advertise: gossipAdvertise, Join: join,
					Local: c.Member, OnChange: c.Hint, Log: log}); err != nil {
					return err
				}
				log.Info("coordinator cluster", "name", cl.Name(), "gossip", gossipAddr, "api", apiURL, "join", join)
			}
			// The health port first: a store that cannot be reached yet
			// shows as /readyz 503 while Run retries it, not as silence.
			go func() {
				if err := health.Serve(ctx, healthAddr, c.Readiness, c.Metrics()); err != nil {
					log.Error("health server", "err", err)
				}
			}()
			go c.Run(ctx)
			srv := serve.Server(c.Handler(), serve.API)
			l, err := serve.Listen("tcp", listen, serve.API)
			if err != nil {
				return err
			}
			if as == nil {
				log.Warn("no --tee: serving plain HTTP; clients cannot verify this coordinator (development only)", "addr", listen)
			} else {
				as.Configure(srv)
				log.Info("coordinator serving attested TLS", "addr", listen, "tee", issuer.Platform())
			}
			return serve.Run(ctx, srv, l)
		},
	}
	f := cmd.Flags()
	logOpts.AddFlags(f)
	f.StringVar(&listen, "listen", ":7080", "address of the enrolment API (attested TLS with --tee, else plain HTTP)")
	f.StringVar(&healthAddr, "health-listen", "127.0.0.1:7081", "plain-HTTP address for /healthz, /readyz and /metrics (probes cannot do attested TLS); :7081 for every address, as kubelet's probes need")
	cli.Rename(f, "health-addr", "health-listen")
	f.StringVar(&storeSpec, "store", "file:/var/lib/sealmesh/store", "shared state: file:<dir>, etcd:<endpoint>[,<endpoint>...], or kubernetes:<namespace>/<name> (in-cluster or $KUBECONFIG)")
	f.StringVar(&stateDir, "state-dir", "/var/lib/sealmesh/coordinator", "this coordinator's sealed seed")
	f.StringVar(&meshID, "mesh-id", os.Getenv("SEALMESH_MESH_ID"), "the mesh this coordinator serves (meshctl manifest set prints it): a store, peer or seed share of another mesh is refused; empty: the sealed state's, or the first mesh recovered (trust on first use) (or $SEALMESH_MESH_ID)")
	f.StringSliceVar(&peers, "peers", nil, "other coordinators (https URLs) to recover the seed from while recovering, besides those gossip finds; needs --tee")
	f.StringVar(&gossipAddr, "gossip-addr", "", "memberlist gossip address (host:port, UDP and TCP) of the coordinator cluster; empty: no cluster")
	f.StringVar(&gossipAdvertise, "gossip-advertise", "", "gossip address other members reach this one at, when not --gossip-addr's")
	f.StringSliceVar(&join, "join", nil, "gossip addresses (host:port) of other coordinators; a DNS name stands for all its addresses (a headless Service)")
	f.StringVar(&name, "name", "", "this coordinator's name in the cluster (default: the host name)")
	f.StringVar(&apiURL, "api-url", "", "URL others reach this coordinator's API at, announced in gossip (default: the gossip address's host with --listen's port)")
	f.StringVar(&vcekCache, "vcek-cache", "", "directory of AMD certificates (VCEKs) for SNP evidence that does not carry its own; empty: evidence must carry it")
	f.BoolVar(&amdKDS, "amd-kds", false, "fetch missing VCEKs from AMD's key distribution service into --vcek-cache (off by default: off-line)")
	f.StringVar(&tdxCollateral, "tdx-collateral", "", "directory of Intel TDX collateral; with it, TDX quotes are also checked for TCB status")
	f.BoolVar(&intelPCS, "intel-pcs", false, "fetch missing TDX collateral from Intel's PCS into --tdx-collateral (off by default: off-line)")
	f.BoolVar(&tokens, "kubernetes-tokens", false, "verify service-account tokens (roles with oidc) against this cluster (in-cluster or $KUBECONFIG credentials)")
	f.StringVar(&jwksFile, "kubernetes-jwks", "", "with --kubernetes-tokens: the issuer's key set as a file, when its endpoint is not readable (kubectl get --raw /openid/v1/jwks)")
	f.BoolVar(&simulatedCoordinators, "allow-simulated-coordinators", false, "with a hardware --tee: accept manifests whose coordinator roles accept the simulated TEE, and hand such peers the seed (development only)")
	f.Float64Var(&ratePerSource, "rate-per-source", 100, "API requests one IP address may make a second, in bursts of twice that (probes are not counted); 0: no limit")
	f.StringSliceVar(&ownerKeys, "owner-key", nil, "an owner's public key (base64, as meshctl keygen prints it); when given, only a first manifest signed by one of these creates the mesh")
	f.StringVar(&teeSpec, "tee", "", "this coordinator's TEE: snp, or simulated:<dir>; it attests every TLS handshake and seals state with its derived key. Empty: plain HTTP and an unlock key (development)")
	cli.AddVersion(cmd, version)
	return cmd
}

func main() {
	if err := command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sealmesh-coordinator:", err)
		os.Exit(1)
	}
}

// parseOwnerKeys decodes --owner-key values.
func parseOwnerKeys(in []string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, s := range in {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil || len(b) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("--owner-key %q: want the base64 of a 32-byte Ed25519 public key (meshctl keygen prints it)", s)
		}
		out = append(out, ed25519.PublicKey(b))
	}
	return out, nil
}

// defaultAPI is the URL announced for this coordinator's API: the host of its
// gossip address and the port of its API.
func defaultAPI(listen, advertise, bind string, tls bool) (string, error) {
	host := advertise
	if host == "" {
		host = bind
	}
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		return "", fmt.Errorf("gossip address %q: %w", host, err)
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		return "", errors.New("--api-url is needed when the gossip address names no host (listening on every address)")
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %w", listen, err)
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(h, port), nil
}

func openStore(spec string) (store.Store, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "file":
		return store.OpenFile(arg)
	case "etcd":
		// etcd:<endpoint>[,<endpoint>...], keys under /sealmesh/
		return etcdstore.Open(strings.Split(arg, ","), "/sealmesh")
	case "kubernetes":
		// kubernetes:<namespace>/<name>, in-cluster credentials or $KUBECONFIG
		ns, name, ok := strings.Cut(arg, "/")
		if !ok || ns == "" || name == "" {
			return nil, fmt.Errorf("--store %q: want kubernetes:<namespace>/<name>", spec)
		}
		cfg, err := kube.RESTConfig()
		if err != nil {
			return nil, fmt.Errorf("--store %s: kubernetes credentials: %w", spec, err)
		}
		return kubestore.Open(cfg, ns, name)
	default:
		return nil, fmt.Errorf("--store %q: want file:<dir>, etcd:<endpoint>[,...] or kubernetes:<namespace>/<name>", spec)
	}
}
