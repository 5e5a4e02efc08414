// Command sealmesh-agent is the node agent (it serves the CNI plugin and runs
// the pods' Nebula in sealmesh-tunnel processes), the pod-mode sidecar, and the
// installer of the CNI plugin.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/agent/cniinstall"
	"github.com/sealmesh/sealmesh/agent/follow"
	"github.com/sealmesh/sealmesh/agent/node"
	"github.com/sealmesh/sealmesh/api/attested"
	"github.com/sealmesh/sealmesh/attest/tee"
	"github.com/sealmesh/sealmesh/internal/cli"
	"github.com/sealmesh/sealmesh/internal/health"
	"github.com/sealmesh/sealmesh/internal/logging"
	"github.com/sealmesh/sealmesh/kube"
)

var version = "dev"

func main() {
	if err := command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sealmesh-agent:", err)
		os.Exit(1)
	}
}

func nodeCmd() *cobra.Command {
	var coordinator, policy, meshID, socket, teeSpec, stateDir, healthAddr, nodeName string
	var kubePods, deleteUnattached bool
	var logOpts logging.Options
	var perProcess int
	var exclude []string
	cmd := &cobra.Command{
		Use:   "node",
		Args:  cobra.NoArgs,
		Short: "serve the CNI plugin on this node",
		Example: `  sealmesh-agent node --tee snp --coordinator https://sealmesh-coordinator.sealmesh:7080 \
    --coordinator-policy-file /etc/sealmesh/policy/policy.yaml --kubernetes-pods --node-name $NODE_NAME`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if perProcess < 1 {
				return fmt.Errorf("--pods-per-process %d: want at least 1", perProcess)
			}
			log, err := logOpts.Logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			klog.SetSlogLogger(log)
			issuer, err := tee.Open(teeSpec, true)
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
			tunnelBin, err := tunnelBinary()
			if err != nil {
				return err
			}
			cfg := node.Config{
				Log: log, Version: version, Coordinator: client, Issuer: issuer,
				StateDir: stateDir, TunnelCommand: []string{tunnelBin}, PodsPerProcess: perProcess,
				// Following the manifest's coordinator roles lets a rolling
				// upgrade of the coordinators reach this agent.
				Follower: &follow.Follower{Client: client, Trust: trust, Log: log},
			}
			if kubePods {
				if nodeName == "" {
					return errors.New("--kubernetes-pods needs --node-name (or $NODE_NAME, from the downward API)")
				}
				kc, err := kube.RESTConfig()
				if err != nil {
					return fmt.Errorf("--kubernetes-pods: credentials: %w", err)
				}
				cluster, err := kube.New(kc)
				if err != nil {
					return err
				}
				cfg.Pods, cfg.Repair, cfg.NodeName = cluster, cluster, nodeName
				cfg.DeleteUnattached = deleteUnattached
			} else if deleteUnattached {
				return errors.New("--delete-unattached-pods needs --kubernetes-pods")
			}
			cfg.ExcludeNamespaces = exclude
			a := node.New(cfg)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log.Info("agent serving", "socket", socket, "coordinator", coordinator, "tee", issuer.Platform())
			go func() {
				// Ready while the CNI socket answers (after the pods of a
				// previous agent are taken up).
				if err := health.Serve(ctx, healthAddr, health.Flag(a.Ready), a.Metrics()); err != nil {
					log.Error("health server", "err", err)
				}
			}()
			// Pods a previous agent attached are taken up before the
			// runtime can ask about them.
			a.Restore(ctx)
			go a.Run(ctx)
			err = a.Serve(ctx, socket)
			a.Shutdown() // the pods' tunnels keep running for the next agent
			return err
		},
	}
	f := cmd.Flags()
	logOpts.AddFlags(f)
	f.StringVar(&coordinator, "coordinator", "https://127.0.0.1:7080", "coordinator URLs, comma-separated, or one whose DNS name has several addresses: https (attested TLS) or http (development); calls fail over between them")
	f.StringVar(&policy, "coordinator-policy-file", "", "what the coordinator must attest as: a file holding a JSON or YAML attestation block (meshctl sim-tee init --policy-out writes one)")
	cli.Rename(f, "coordinator-policy", "coordinator-policy-file")
	f.StringVar(&meshID, "mesh-id", os.Getenv("SEALMESH_MESH_ID"), "the mesh to join: a coordinator of another mesh is refused before evidence is sent (or $SEALMESH_MESH_ID)")
	f.StringVar(&socket, "socket", cniapi.DefaultSocket, "unix socket the CNI plugin calls")
	f.StringVar(&teeSpec, "tee", "", "evidence source: snp (inside an SEV-SNP guest), tdx (inside a TD), oidc:<projected service-account token file>, or simulated:<dir> (development; meshctl sim-tee init)")
	f.StringVar(&stateDir, "state-dir", "/run/sealmesh", "per-pod state and logs")
	f.StringVar(&healthAddr, "health-listen", "127.0.0.1:7082", "address for /healthz, /readyz and /metrics")
	cli.Rename(f, "health-addr", "health-listen")
	f.BoolVar(&kubePods, "kubernetes-pods", false, "before enrolling a pod, require it to exist on this node with the runtime's UID (Kubernetes API, in-cluster or $KUBECONFIG; needs get on pods) and take its service account")
	f.StringVar(&nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's Kubernetes name (default $NODE_NAME)")
	f.StringSliceVar(&exclude, "exclude-namespaces", nil, "namespaces whose pods are never attached (as in install-cni's --exclude-namespaces); with --kubernetes-pods, also not reported as unattached")
	f.BoolVar(&deleteUnattached, "delete-unattached-pods", false, "with --kubernetes-pods: delete running pods that started without their sealmesh interface (before the plugin was chained), so that their controllers start them again attached; without it they are only reported (event and metric)")
	f.IntVar(&perProcess, "pods-per-process", node.DefaultPodsPerProcess, "pods whose Nebula instances share one sealmesh-tunnel process: more saves memory, fewer limits what one crash takes down (the agent restores them)")
	cmd.MarkFlagRequired("tee")
	return cmd
}

func podCmd() *cobra.Command {
	var coordinator, policy, meshID, teeSpec, stateDir, healthAddr, ifName, namespace, name, uid string
	var logOpts logging.Options
	cmd := &cobra.Command{
		Use:   "pod",
		Args:  cobra.NoArgs,
		Short: "attach this pod (its own TEE, its own network namespace) to the mesh: a sidecar, no CNI",
		Example: `  sealmesh-agent pod --tee snp --coordinator https://sealmesh-coordinator.sealmesh:7080 \
    --coordinator-policy-file /etc/sealmesh/policy/policy.yaml`,
		Long: `Pod mode: the agent runs inside a confidential pod, attests with the pod's own TEE,
and brings the Nebula interface up in the pod's own network namespace; it renews the
certificate and follows manifest changes like the node agent, and gives the address back
when the pod stops (SIGTERM).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logOpts.Logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			klog.SetSlogLogger(log)
			issuer, err := tee.Open(teeSpec, true)
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
			tunnelBin, err := tunnelBinary()
			if err != nil {
				return err
			}
			host, _ := os.Hostname()
			a := node.New(node.Config{Log: log, Version: version, Coordinator: client, Issuer: issuer, StateDir: stateDir, TunnelCommand: []string{tunnelBin},
				Follower: &follow.Follower{Client: client, Trust: trust, Log: log}})
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			go func() {
				// Ready while attached with a certificate that has not expired.
				if err := health.Serve(ctx, healthAddr, a.SelfReady, a.Metrics()); err != nil {
					log.Error("health server", "err", err)
				}
			}()
			res, err := a.Self(ctx, node.Pod{ContainerID: "pod-" + host, IfName: ifName, Namespace: namespace, Name: name, UID: uid})
			if err != nil {
				return err
			}
			log.Info("pod attached to the mesh", "interface", res.Interface, "ip", res.Address, "tee", issuer.Platform())
			go a.Run(ctx)
			<-ctx.Done()
			// The pod is stopping: give the address back.
			dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return a.Leave(dctx)
		},
	}
	f := cmd.Flags()
	logOpts.AddFlags(f)
	f.StringVar(&coordinator, "coordinator", "https://127.0.0.1:7080", "coordinator URLs, comma-separated, or one whose DNS name has several addresses")
	f.StringVar(&policy, "coordinator-policy-file", "", "what the coordinator must attest as: a file holding a JSON or YAML attestation block (meshctl sim-tee init --policy-out writes one)")
	cli.Rename(f, "coordinator-policy", "coordinator-policy-file")
	f.StringVar(&meshID, "mesh-id", os.Getenv("SEALMESH_MESH_ID"), "the mesh to join: a coordinator of another mesh is refused before evidence is sent (or $SEALMESH_MESH_ID)")
	f.StringVar(&teeSpec, "tee", "", "this pod's evidence source: snp, tdx, or simulated:<dir> (development)")
	f.StringVar(&stateDir, "state-dir", "/run/sealmesh", "state and the tunnel's log (an emptyDir)")
	f.StringVar(&healthAddr, "health-listen", "127.0.0.1:7082", "address for /healthz, /readyz and /metrics")
	cli.Rename(f, "health-addr", "health-listen")
	f.StringVar(&ifName, "interface", "nebula1", "the Nebula interface")
	f.StringVar(&namespace, "pod-namespace", os.Getenv("POD_NAMESPACE"), "this pod's namespace (default $POD_NAMESPACE, from the downward API)")
	f.StringVar(&name, "pod-name", os.Getenv("POD_NAME"), "this pod's name (default $POD_NAME)")
	f.StringVar(&uid, "pod-uid", os.Getenv("POD_UID"), "this pod's UID (default $POD_UID)")
	cmd.MarkFlagRequired("tee")
	return cmd
}

func command() *cobra.Command {
	root := cli.Group(&cobra.Command{Use: "sealmesh-agent", Short: "sealmesh node agent", SilenceUsage: true, SilenceErrors: true})
	root.AddCommand(nodeCmd(), podCmd(), installCNICmd())
	cli.AddVersion(root, version)
	return root
}

// tunnelBinary is sealmesh-tunnel, installed beside this binary: one runs per
// few pods and outlives the agent, so it is a small binary of its own rather
// than this one re-executed.
func tunnelBinary() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), "sealmesh-tunnel")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("sealmesh-tunnel is not installed beside sealmesh-agent (%s): install both", p)
	}
	return p, nil
}

func installCNICmd() *cobra.Command {
	var confDir, binDir, plugin, socket, healthAddr, owner string
	var mtu int
	var exclude []string
	var watch, uninstall bool
	var logOpts logging.Options
	cmd := &cobra.Command{
		Use:   "install-cni",
		Args:  cobra.NoArgs,
		Short: "put sealmesh-cni into this node's CNI bin directory and chain it into the primary network configuration",
		Example: `  sealmesh-agent install-cni --exclude-namespaces kube-system,sealmesh
  sealmesh-agent install-cni --watch --health-listen 127.0.0.1:7083 --uninstall-when-gone sealmesh/sealmesh-agent
  sealmesh-agent install-cni --uninstall`,
		Long: `install-cni copies sealmesh-cni into the CNI bin directory and appends it to the
plugin list of the configuration the runtime loads (the first valid .conf, .conflist or
.json in name order; a .conf becomes a .conflist). With --watch it stays, puts the
plugin back whenever the primary CNI rewrites its file, and serves /readyz only while
the plugin is chained. It never removes the plugin on exit: pods created while the
agent is down fail with a retryable error instead of starting unencrypted.
--uninstall removes the plugin and restores the file as it was; with
--uninstall-when-gone, a watching install-cni does so when it stops because its
DaemonSet was deleted (helm uninstall), and not when it stops for an update.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logOpts.Logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			klog.SetSlogLogger(log)
			remove := func() error {
				changed, err := cniinstall.Remove(confDir)
				for _, f := range changed {
					log.Info("sealmesh-cni removed", "file", f)
				}
				if err != nil {
					return err
				}
				if err := os.Remove(filepath.Join(binDir, cniinstall.PluginType)); err != nil && !os.IsNotExist(err) {
					return err
				}
				return nil
			}
			if uninstall {
				return remove()
			}
			// Bad flags change nothing on the node.
			if mtu < 0 {
				return fmt.Errorf("--mtu %d: want 0 (from each pod's link) or a positive MTU", mtu)
			}
			if owner != "" && !watch {
				return errors.New("--uninstall-when-gone needs --watch (it acts when the watching install-cni stops)")
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			var ds *daemonSet
			if owner != "" {
				var err error
				if ds, err = followDaemonSet(ctx, owner, log); err != nil {
					return err
				}
			}
			if plugin == "" {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				plugin = filepath.Join(filepath.Dir(self), cniinstall.PluginType)
			}
			entry := map[string]any{"agentSocket": socket}
			if mtu > 0 {
				entry["mtu"] = mtu
			}
			if len(exclude) > 0 {
				entry["excludeNamespaces"] = exclude
			}
			in, err := cniinstall.New(cniinstall.Config{ConfDir: confDir, BinDir: binDir, Binary: plugin, Entry: entry, Log: log})
			if err != nil {
				return err
			}
			if !watch {
				return in.Once()
			}
			if healthAddr != "" {
				go func() {
					if err := health.Serve(ctx, healthAddr, in.Ready, nil); err != nil {
						log.Error("health server", "err", err)
					}
				}()
			}
			// Run installs at once, then on every change.
			if err := in.Run(ctx); err != nil || ds == nil {
				return err
			}
			return ds.uninstallIfGone(log, remove)
		},
	}
	f := cmd.Flags()
	logOpts.AddFlags(f)
	f.StringVar(&confDir, "cni-conf-dir", "/etc/cni/net.d", "the runtime's network configuration directory")
	f.StringVar(&binDir, "cni-bin-dir", "/opt/cni/bin", "the runtime's CNI plugin directory")
	f.StringVar(&plugin, "plugin", "", "the sealmesh-cni binary to install (default: next to this binary)")
	f.StringVar(&socket, "agent-socket", cniapi.DefaultSocket, "the agent's socket, written into the plugin's configuration")
	f.IntVar(&mtu, "mtu", 0, "the pods' Nebula MTU (0: derived from each pod's link)")
	f.StringSliceVar(&exclude, "exclude-namespaces", nil, "namespaces whose pods the plugin passes through without asking the agent (comma-separated): at least sealmesh's own, whose coordinators must start before any pod can enrol")
	f.BoolVar(&watch, "watch", false, "keep running and re-install when the configuration changes")
	f.StringVar(&healthAddr, "health-listen", "", "with --watch: address for /healthz and /readyz (ready while installed)")
	cli.Rename(f, "health-addr", "health-listen")
	f.BoolVar(&uninstall, "uninstall", false, "remove the plugin from every configuration and the bin directory")
	f.StringVar(&owner, "uninstall-when-gone", "", "with --watch: namespace/name of the DaemonSet running this; on exit, uninstall if it is deleted (in-cluster or $KUBECONFIG credentials)")
	return cmd
}

// daemonSet is the DaemonSet running install-cni, followed from its start.
type daemonSet struct {
	cs       kubernetes.Interface
	ns, name string
	watch    *cniinstall.DaemonSetWatch
}

func followDaemonSet(ctx context.Context, owner string, log *slog.Logger) (*daemonSet, error) {
	ns, name, ok := strings.Cut(owner, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("--uninstall-when-gone %q: want namespace/name", owner)
	}
	kc, err := kube.RESTConfig()
	if err != nil {
		return nil, fmt.Errorf("--uninstall-when-gone: %w", err)
	}
	cs, err := kubernetes.NewForConfig(kc)
	if err != nil {
		return nil, err
	}
	return &daemonSet{cs: cs, ns: ns, name: name, watch: cniinstall.WatchDaemonSet(ctx, cs, ns, name, log)}, nil
}

// uninstallIfGone runs remove when the DaemonSet was seen deleted or being
// deleted (helm uninstall removes the permission to read it soon after, so
// what the watch saw counts), or is gone now. When neither can be told, the
// plugin stays: a node whose pods wait for the agent is safe, one whose pods
// start unencrypted is not.
func (d *daemonSet) uninstallIfGone(log *slog.Logger, remove func() error) error {
	gone := d.watch.Gone()
	if !gone {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if gone, err = cniinstall.DaemonSetGone(ctx, d.cs, d.ns, d.name); err != nil {
			log.Warn("leaving sealmesh-cni installed: cannot tell an uninstall from an update", "err", err)
			return nil
		}
	}
	if !gone {
		log.Info("leaving sealmesh-cni installed: its DaemonSet remains (an update); pods wait for the agent meanwhile")
		return nil
	}
	log.Info("DaemonSet deleted: uninstalling sealmesh-cni from this node")
	return remove()
}
