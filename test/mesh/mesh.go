// Package mesh brings up a whole sealmesh on one machine, from the real binaries:
// a coordinator, a lighthouse and a node in network namespaces of their own, and
// pods whose networks are made by running a conflist (reference bridge +
// host-local, then sealmesh-cni) through libcni as a container runtime does.
// `make demo` and the end-to-end tests both drive it.
//
//	coordinator ns  10.99.0.2 ──veth── 10.99.0.1  node ns  10.99.1.1 ──veth── 10.99.1.2  lighthouse ns
//	                                      │ bridge smbr0 10.244.0.1/24
//	                                 pod-a ns, pod-b ns … (eth0 from bridge, nebula1 from sealmesh)
package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/sealmesh/sealmesh/agent/cniinstall"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/test/netlab"
)

// Addresses of the lab network (inside namespaces the lab creates).
const (
	CoordinatorIP = "10.99.0.2"
	// NodeIP is the node's address on its link to the coordinator.
	NodeIP        = "10.99.0.1"
	LighthouseIP  = "10.99.1.2"
	Overlay       = "10.42.0.0/16"
	Overlay6      = "fd42:42::/64"
	LighthouseVPN = "10.42.0.1"
	PodSubnet     = "10.244.0.0/24"
	Bridge        = "smbr0"
	NebulaIf      = "nebula1"
)

// Options configure a mesh.
type Options struct {
	// BinDir holds the sealmesh binaries and the reference CNI plugins.
	BinDir string
	// WorkDir holds logs, state and configuration; the caller removes it.
	WorkDir string
	// Prefix names the namespaces; unique per concurrent mesh.
	Prefix string
	// Say reports each step as it happens.
	Say func(format string, args ...any)
	// CNIVersion of the pods' conflist; "" means 1.0.0.
	CNIVersion string
	// Chain is the pods' conflist around sealmesh-cni (ChainBridge if "").
	Chain string
	// Image is what the node's simulated guest measures as; the manifest's
	// pod role accepts "sealmesh-workload".
	Image string
	// Roles come before the manifest's "pod" role: pods in their namespaces
	// take them (podSelector), with the same attestation.
	Roles []Role
	// Firewall replaces the manifest's rules (default: pods accept anything
	// from pods).
	Firewall []FirewallRule
	// Lifetime of the certificates ("" means 1h).
	Lifetime string
	// PodsPerProcess is the agent's --pods-per-process (0: its default).
	PodsPerProcess int
}

// Mesh is a running mesh.
type Mesh struct {
	opt         Options
	Lab         *netlab.Lab
	Node, Coord *netlab.NS
	LH          *netlab.NS
	Pods        map[string]*Pod
	cni         *libcni.CNIConfig
	// Plugins times every plugin exec of the pods' chains.
	Plugins  *PluginTimes
	conflist *libcni.NetworkConfigList
	coordURL string
	// AgentPID is the node agent's process; its children run the pods' Nebula.
	AgentPID int
	coordCmd *exec.Cmd
	mu       sync.Mutex // Pods, for pods added concurrently
}

// Pod is a pod's namespace and what its conflist returned.
type Pod struct {
	Name       string
	NS         *netlab.NS
	Result     *current.Result
	UnderlyIP  netip.Addr
	OverlayIP  netip.Addr
	OverlayIP6 netip.Addr
	// HostVeth is the node-side end of the pod's underlay link, a port of the
	// bridge: where the pod's traffic crosses the node.
	HostVeth string
	rt       *libcni.RuntimeConf
}

// Up builds the lab and starts every part. On error the caller still calls Close.
func Up(ctx context.Context, o Options) (*Mesh, error) {
	if o.Say == nil {
		o.Say = func(string, ...any) {}
	}
	if o.Image == "" {
		o.Image = "sealmesh-workload"
	}
	m := &Mesh{opt: o, Lab: netlab.New(o.Prefix), Pods: map[string]*Pod{}, coordURL: "https://" + CoordinatorIP + ":7080"}
	say := o.Say
	var err error

	say("creating network namespaces %s-{coordinator,lighthouse,node}", o.Prefix)
	if m.Coord, err = m.Lab.NS("coordinator"); err != nil {
		return m, err
	}
	if m.LH, err = m.Lab.NS("lighthouse"); err != nil {
		return m, err
	}
	if m.Node, err = m.Lab.NS("node"); err != nil {
		return m, err
	}
	if err := netlab.Veth(m.Node, "smc0", NodeIP+"/24", m.Coord, "eth0", CoordinatorIP+"/24"); err != nil {
		return m, err
	}
	if err := netlab.Veth(m.Node, "sml0", "10.99.1.1/24", m.LH, "eth0", LighthouseIP+"/24"); err != nil {
		return m, err
	}
	for _, step := range []error{m.Coord.DefaultRoute(NodeIP), m.LH.DefaultRoute("10.99.1.1"), m.Node.Forward()} {
		if step != nil {
			return m, step
		}
	}

	say("making a simulated SEV-SNP guest for the coordinator (meshctl sim-tee init)")
	out, err := m.Meshctl("sim-tee", "init", "--dir", m.path("coordinator-tee"), "--image", "sealmesh-coordinator")
	if err != nil {
		return m, err
	}
	coordAttestation := map[string]any{"simulated": map[string]any{
		"measurements": []string{field(out, "measurement")}, "rootFingerprint": field(out, "rootFingerprint"),
	}}
	coordPolicy, err := json.Marshal(coordAttestation)
	if err != nil {
		return m, err
	}
	if err := os.WriteFile(m.path("coordinator-policy.json"), coordPolicy, 0o644); err != nil {
		return m, err
	}

	say("starting sealmesh-coordinator in %s (attested TLS on %s:7080)", m.Coord.Name, CoordinatorIP)
	if m.coordCmd, err = m.Lab.Start(m.Coord, m.path("coordinator.log"), m.bin("sealmesh-coordinator"),
		"--listen", CoordinatorIP+":7080", "--health-listen", CoordinatorIP+":7081", "--tee", "simulated:"+m.path("coordinator-tee"),
		"--store", "file:"+m.path("store"), "--state-dir", m.path("coordinator-state")); err != nil {
		return m, err
	}
	if err := m.waitHTTP(ctx, m.Node, "http://"+CoordinatorIP+":7081/healthz"); err != nil {
		return m, fmt.Errorf("coordinator did not come up: %w\n%s", err, m.Tail("coordinator.log"))
	}

	say("making a simulated SEV-SNP guest for the node (meshctl sim-tee init)")
	out, err = m.Meshctl("sim-tee", "init", "--dir", m.path("sim-tee"), "--image", o.Image)
	if err != nil {
		return m, err
	}
	root := field(out, "rootFingerprint")
	say("making the workload owner's key (meshctl keygen)")
	out, err = m.Meshctl("keygen", "--kind", "owner", "--out", m.path("owner.key"))
	if err != nil {
		return m, err
	}
	man, err := Manifest(root, "", field(out, "publicKey"), coordAttestation, o.Roles, o.Firewall, o.Lifetime)
	if err != nil {
		return m, err
	}
	if err := os.WriteFile(m.path("manifest.json"), man, 0o644); err != nil {
		return m, err
	}
	say("creating the mesh (meshctl manifest set): overlay %s and %s, role pod [simulated], lighthouse %s", Overlay, Overlay6, LighthouseVPN)
	if out, err := m.Meshctl("manifest", "set", m.path("manifest.json"), "--owner-key", m.path("owner.key"), "--out-dir", m.opt.WorkDir); err != nil {
		return m, err
	} else {
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			say("  %s", l)
		}
	}

	say("making the lighthouse's join token (meshctl token create)")
	if out, err := m.Meshctl("token", "create", "--role", "lighthouse", "--name", LighthouseName, "--owner-key", m.path("owner.key"), "--out", m.path("lighthouse.token")); err != nil {
		return m, err
	} else {
		say("  %s", strings.TrimSpace(out))
	}

	say("starting sealmesh-lighthouse in %s (underlay %s:4242, overlay %s, DNS for host names on %s:53)", m.LH.Name, LighthouseIP, LighthouseVPN, LighthouseIP)
	if _, err := m.Lab.Start(m.LH, m.path("lighthouse.log"), m.bin("sealmesh-lighthouse"),
		"--coordinator", m.coordURL, "--coordinator-policy-file", m.path("coordinator-policy.json"),
		"--token-file", m.path("lighthouse.token"), "--health-listen", "127.0.0.1:7082", "--dns", LighthouseIP+":53"); err != nil {
		return m, err
	}
	if err := m.waitHTTP(ctx, m.LH, "http://127.0.0.1:7082/readyz"); err != nil {
		return m, fmt.Errorf("lighthouse not ready: %w\n%s", err, m.Tail("lighthouse.log"))
	}

	say("starting sealmesh-agent in %s (node mode, CNI socket %s)", m.Node.Name, m.socket())
	if err := m.startAgent(ctx, "agent.log"); err != nil {
		return m, err
	}

	conf, err := m.Conflist()
	if err != nil {
		return m, err
	}
	if err := os.WriteFile(m.path("10-sealmesh.conflist"), conf, 0o644); err != nil {
		return m, err
	}
	if m.conflist, err = libcni.ConfListFromBytes(conf); err != nil {
		return m, err
	}
	m.Plugins = newPluginTimes()
	m.cni = libcni.NewCNIConfigWithCacheDir([]string{o.BinDir}, m.path("cni-cache"), m.Plugins)
	return m, nil
}

// The chains sealmesh-cni is tested in.
const (
	// ChainBridge: bridge + host-local, then sealmesh-cni.
	ChainBridge = "bridge"
	// ChainPTP: ptp + host-local, then sealmesh-cni.
	ChainPTP = "ptp"
	// ChainBridgeOnly: bridge + host-local without sealmesh-cni, the
	// baseline for CNI latency.
	ChainBridgeOnly = "bridge-only"
	// ChainBridgeTuning: bridge + host-local, then the reference tuning
	// plugin with nothing to tune, in sealmesh-cni's place: the least a
	// chained plugin costs (its exec, its configuration and the previous
	// result parsed, the pod's netns entered, the result passed on), the
	// floor of sealmesh-cni's latency in the same run.
	ChainBridgeTuning = "bridge+tuning"
	// ChainBridgeThenMeta: bridge + host-local, sealmesh-cni, then portmap
	// (nftables; host port PortmapHost to the pod's PortmapPod) and tuning
	// (promiscuous eth0): their input is sealmesh-cni's output.
	ChainBridgeThenMeta = "bridge+portmap+tuning"
	// PTPSubnet is the ptp chain's pod subnet.
	PTPSubnet               = "10.245.0.0/24"
	PortmapHost, PortmapPod = 8080, 80
)

// UseCNIVersion switches the pods' conflist to another cniVersion for the pods
// added after it.
func (m *Mesh) UseCNIVersion(v string) error {
	m.opt.CNIVersion = v
	return m.useConflist()
}

// meshed reports whether the pods' chain has sealmesh-cni in it.
func (m *Mesh) meshed() bool {
	return m.opt.Chain != ChainBridgeOnly && m.opt.Chain != ChainBridgeTuning
}

// UseChain switches the pods' conflist to another chain for the pods added
// after it.
func (m *Mesh) UseChain(chain string) error {
	m.opt.Chain = chain
	return m.useConflist()
}

func (m *Mesh) useConflist() error {
	conf, err := m.Conflist()
	if err != nil {
		return err
	}
	m.conflist, err = libcni.ConfListFromBytes(conf)
	return err
}

// UseConfFile switches the pods' network to the configuration in path, as a
// runtime loads it (a .conflist, or a single plugin's .conf), with plugins
// looked up in binDirs before the mesh's own.
func (m *Mesh) UseConfFile(path string, binDirs ...string) error {
	var err error
	if m.conflist, err = cniinstall.Load(path); err != nil {
		return err
	}
	m.cni = libcni.NewCNIConfigWithCacheDir(append(binDirs, m.opt.BinDir), m.path("cni-cache"), m.Plugins)
	return nil
}

// AgentSocket is the node agent's CNI socket.
func (m *Mesh) AgentSocket() string { return m.socket() }

// Conflist is the pods' network: the reference bridge with host-local, then
// sealmesh-cni chained after it.
func (m *Mesh) Conflist() ([]byte, error) {
	v := m.opt.CNIVersion
	if v == "" {
		v = "1.0.0"
	}
	ipam := func(subnet, dir string) map[string]any {
		return map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": subnet}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": m.path(dir),
		}
	}
	bridge := map[string]any{"type": "bridge", "bridge": Bridge, "isGateway": true, "ipMasq": false, "ipam": ipam(PodSubnet, "host-local")}
	ours := map[string]any{
		"type": "sealmesh-cni", "agentSocket": m.socket(), "interfaceName": NebulaIf,
		"logFile": m.path("sealmesh-cni.log"),
	}
	var plugins []any
	switch m.opt.Chain {
	case "", ChainBridge:
		plugins = []any{bridge, ours}
	case ChainPTP:
		plugins = []any{map[string]any{"type": "ptp", "ipam": ipam(PTPSubnet, "host-local-ptp")}, ours}
	case ChainBridgeOnly:
		plugins = []any{bridge}
	case ChainBridgeTuning:
		plugins = []any{bridge, map[string]any{"type": "tuning"}}
	case ChainBridgeThenMeta:
		plugins = []any{bridge, ours,
			map[string]any{"type": "portmap", "backend": "nftables", "capabilities": map[string]bool{"portMappings": true}},
			map[string]any{"type": "tuning", "promisc": true},
		}
	default:
		return nil, fmt.Errorf("unknown chain %q", m.opt.Chain)
	}
	return json.MarshalIndent(map[string]any{"cniVersion": v, "name": "sealmesh-demo", "plugins": plugins}, "", "  ")
}

// AddPod creates a pod namespace and runs the conflist's ADD for it, from the
// node's namespace as the runtime would.
func (m *Mesh) AddPod(ctx context.Context, name string) (*Pod, error) {
	return m.AddPodIn(ctx, name, "demo")
}

// AddPodIn is AddPod for a pod in a Kubernetes namespace of its own.
func (m *Mesh) AddPodIn(ctx context.Context, name, namespace string) (*Pod, error) {
	pns, err := m.Lab.NS(name)
	if err != nil {
		return nil, err
	}
	p := &Pod{Name: name, NS: pns, rt: &libcni.RuntimeConf{
		ContainerID: m.opt.Prefix + "-" + name, NetNS: pns.Path, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", namespace}, {"K8S_POD_NAME", name}},
	}}
	if m.opt.Chain == ChainBridgeThenMeta {
		p.rt.CapabilityArgs = map[string]any{"portMappings": []map[string]any{
			{"hostPort": PortmapHost, "containerPort": PortmapPod, "protocol": "tcp"},
		}}
	}
	m.mu.Lock()
	m.Pods[name] = p
	m.mu.Unlock()
	var res types.Result
	err = m.Node.Do(func() error {
		var err error
		res, err = m.cni.AddNetworkList(ctx, m.conflist, p.rt)
		return err
	})
	if err != nil {
		return p, fmt.Errorf("CNI ADD %s: %w\nagent log:\n%s", name, err, m.Tail("agent.log"))
	}
	if res.Version() != m.conflist.CNIVersion {
		return p, fmt.Errorf("CNI ADD %s: result version %s, want the conflist's %s", name, res.Version(), m.conflist.CNIVersion)
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return p, err
	}
	p.Result = r
	for _, ipc := range r.IPs {
		if ipc.Interface == nil {
			continue
		}
		addr, _ := netip.AddrFromSlice(ipc.Address.IP)
		addr = addr.Unmap()
		switch name := r.Interfaces[*ipc.Interface].Name; {
		case name == "eth0":
			p.UnderlyIP = addr
		case name == NebulaIf && addr.Is4():
			p.OverlayIP = addr
		case name == NebulaIf:
			p.OverlayIP6 = addr
		}
	}
	for _, i := range r.Interfaces {
		if i.Sandbox == "" && i.Name != Bridge {
			p.HostVeth = i.Name
		}
	}
	if m.meshed() && (!p.OverlayIP.IsValid() || !p.OverlayIP6.IsValid()) {
		return p, fmt.Errorf("CNI result for %s lacks an IPv4 or IPv6 %s address: %+v", name, NebulaIf, r)
	}
	return p, nil
}

func (m *Mesh) startAgent(ctx context.Context, log string) error {
	args := []string{"node",
		"--coordinator", m.coordURL, "--coordinator-policy-file", m.path("coordinator-policy.json"),
		"--socket", m.socket(), "--tee", "simulated:" + m.path("sim-tee"),
		"--state-dir", m.path("agent-state")}
	if m.opt.PodsPerProcess > 0 {
		args = append(args, "--pods-per-process", strconv.Itoa(m.opt.PodsPerProcess))
	}
	agent, err := m.Lab.Start(m.Node, m.path(log), m.bin("sealmesh-agent"), args...)
	if err != nil {
		return err
	}
	m.AgentPID = agent.Process.Pid
	if err := m.waitHTTP(ctx, m.Node, "http://127.0.0.1:7082/readyz"); err != nil {
		return fmt.Errorf("agent not ready: %w\n%s", err, m.Tail(log))
	}
	return nil
}

// KillAgent ends the node agent with SIGKILL (by the PID the mesh started),
// leaving the pods' tunnels, its children, running; RestartAgent starts a new
// one, logging to log.
func (m *Mesh) KillAgent() {
	syscall.Kill(m.AgentPID, syscall.SIGKILL)
	for range 200 {
		if syscall.Kill(m.AgentPID, 0) != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// AgentRecord is what the node agent keeps on disk of a pod's attachment.
func (m *Mesh) AgentRecord(p *Pod) (map[string]any, error) {
	b, err := os.ReadFile(filepath.Join(m.path("agent-state"), "pods", p.rt.ContainerID+"-"+NebulaIf+".json"))
	if err != nil {
		return nil, err
	}
	var rec map[string]any
	return rec, json.Unmarshal(b, &rec)
}

// TunnelInfo names the tunnel process running a pod's Nebula instance.
type TunnelInfo struct {
	ID       string // the process's name in the agent's state
	PID      int
	Control  string // its control socket
	Instance string // the pod's instance in it
}

// Tunnel reads from the agent's state where the pod's Nebula runs.
func (m *Mesh) Tunnel(p *Pod) (TunnelInfo, error) {
	rec, err := m.AgentRecord(p)
	if err != nil {
		return TunnelInfo{}, err
	}
	id, _ := rec["tunnel"].(string)
	dir := filepath.Join(m.path("agent-state"), "tunnels")
	b, err := os.ReadFile(filepath.Join(dir, id+".json"))
	if err != nil {
		return TunnelInfo{}, err
	}
	var h struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return TunnelInfo{}, err
	}
	return TunnelInfo{ID: id, PID: h.PID, Control: filepath.Join(dir, id+".sock"), Instance: p.rt.ContainerID + "-" + NebulaIf}, nil
}

// RestartAgent starts a new node agent over the same state, logging to log.
func (m *Mesh) RestartAgent(ctx context.Context, log string) error { return m.startAgent(ctx, log) }

// CNIStatus runs the conflist's STATUS (CNI 1.1) from the node's namespace.
func (m *Mesh) CNIStatus(ctx context.Context) error {
	return m.Node.Do(func() error { return m.cni.GetStatusNetworkList(ctx, m.conflist) })
}

// GC runs the conflist's GC (CNI 1.1) with keep as the runtime's valid
// attachments.
func (m *Mesh) GC(ctx context.Context, keep ...*Pod) error {
	args := &libcni.GCArgs{}
	for _, p := range keep {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: p.rt.ContainerID, IfName: p.rt.IfName})
	}
	return m.Node.Do(func() error { return m.cni.GCNetworkList(ctx, m.conflist, args) })
}

// StopCoordinator stops the coordinator process (by the PID the mesh started).
func (m *Mesh) StopCoordinator() { netlab.Stop(m.coordCmd, 5*time.Second) }

// PluginVersions asks sealmesh-cni which cniVersions it supports (CNI VERSION).
func (m *Mesh) PluginVersions(ctx context.Context) ([]string, error) {
	var v []string
	err := m.Node.Do(func() error {
		info, err := m.cni.GetVersionInfo(ctx, "sealmesh-cni")
		if err == nil {
			v = info.SupportedVersions()
		}
		return err
	})
	return v, err
}

// CheckPod runs the conflist's CHECK.
//
// The reference bridge plugin's CHECK requires every IP of the result to be on its
// own interface (ip.ValidateExpectedInterfaceIPs ignores IPConfig.Interface), so a
// whole-chain CHECK fails once a chained plugin appends an address on another
// interface, as sealmesh-cni does. CheckSealmesh checks our plugin alone.
func (m *Mesh) CheckPod(ctx context.Context, p *Pod) error {
	return m.Node.Do(func() error { return m.cni.CheckNetworkList(ctx, m.conflist, p.rt) })
}

// CheckSealmesh runs sealmesh-cni's CHECK against the chain's cached result, as the
// runtime would hand it over.
func (m *Mesh) CheckSealmesh(ctx context.Context, p *Pod) error {
	var ours map[string]any
	for _, pl := range m.conflist.Plugins {
		if pl.Network.Type == "sealmesh-cni" {
			if err := json.Unmarshal(pl.Bytes, &ours); err != nil {
				return err
			}
		}
	}
	ours["cniVersion"], ours["name"] = m.conflist.CNIVersion, m.conflist.Name
	b, err := json.Marshal(ours)
	if err != nil {
		return err
	}
	conf, err := libcni.NetworkPluginConfFromBytes(b)
	if err != nil {
		return err
	}
	return m.Node.Do(func() error { return m.cni.CheckNetwork(ctx, conf, p.rt) })
}

// DelPod runs the conflist's DEL.
func (m *Mesh) DelPod(ctx context.Context, p *Pod) error {
	return m.Node.Do(func() error { return m.cni.DelNetworkList(ctx, m.conflist, p.rt) })
}

// RemovePod deletes the pod's attachment (CNI DEL) and its namespace, as
// a pod that is deleted: a pod of the same name may be added again.
func (m *Mesh) RemovePod(ctx context.Context, p *Pod) error {
	if err := m.DelPod(ctx, p); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.Pods, p.Name)
	m.mu.Unlock()
	return m.Lab.Remove(p.NS)
}

// Status returns the coordinator's status, fetched from the node.
func (m *Mesh) Status(ctx context.Context) (*api.Status, error) {
	out, err := m.Meshctl("status", "--owner-key", m.OwnerKey(), "-o", "json")
	if err != nil {
		return nil, err
	}
	var s api.Status
	return &s, json.Unmarshal([]byte(out), &s)
}

// Dir is the work directory: logs, state and configuration.
func (m *Mesh) Dir() string { return m.opt.WorkDir }

// OwnerKey is the owner key the mesh was created with.
func (m *Mesh) OwnerKey() string { return m.path("owner.key") }

// Meshctl runs meshctl inside the node's namespace, verifying the coordinator
// against the coordinator policy.
func (m *Mesh) Meshctl(args ...string) (string, error) {
	return m.MeshctlWithPolicy(m.path("coordinator-policy.json"), args...)
}

// MeshctlWithPolicy runs meshctl expecting the coordinator to satisfy policyFile.
func (m *Mesh) MeshctlWithPolicy(policyFile string, args ...string) (string, error) {
	cmd := exec.Command(m.bin("meshctl"), append(args, "--coordinator", m.coordURL, "--coordinator-policy-file", policyFile)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := m.Node.Do(cmd.Run); err != nil {
		return out.String(), fmt.Errorf("meshctl %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// Close deletes the pods' attachments, stops every process and removes every
// namespace, also after a failed Up.
func (m *Mesh) Close(ctx context.Context) error {
	var errs []error
	if m.cni != nil {
		for _, p := range m.Pods {
			if err := m.DelPod(ctx, p); err != nil {
				errs = append(errs, fmt.Errorf("CNI DEL %s: %w", p.Name, err))
			}
		}
	}
	errs = append(errs, m.Lab.Close())
	return errors.Join(errs...)
}

// Tail returns the end of a log file in the work directory.
func (m *Mesh) Tail(name string) string {
	b, _ := os.ReadFile(m.path(name))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// CoordinatorURL is where the coordinator serves attested TLS.
func (m *Mesh) CoordinatorURL() string { return m.coordURL }

// Bin names a binary under test.
func (m *Mesh) Bin(name string) string { return m.bin(name) }

// WaitHTTP waits until url answers 200 from inside n.
func (m *Mesh) WaitHTTP(ctx context.Context, n *netlab.NS, url string) error {
	return m.waitHTTP(ctx, n, url)
}

// Path names a file in the work directory.
func (m *Mesh) Path(name string) string { return m.path(name) }

func (m *Mesh) path(name string) string { return filepath.Join(m.opt.WorkDir, name) }
func (m *Mesh) bin(name string) string  { return filepath.Join(m.opt.BinDir, name) }
func (m *Mesh) socket() string          { return m.path("agent.sock") }

// httpIn is an HTTP client whose connections start in namespace n.
func httpIn(n *netlab.NS, timeout time.Duration) *http.Client {
	// net/http dials on a goroutine of its own; the dialer enters the
	// namespace itself so the socket is made there.
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := n.Do(func() error {
				var err error
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
}

// AgentMetrics fetches the node agent's /metrics.
func (m *Mesh) AgentMetrics() (string, error) { return m.Metrics("agent") }

// Metrics fetches /metrics of the agent, the coordinator or the lighthouse.
func (m *Mesh) Metrics(component string) (string, error) {
	ns, url := m.Node, ""
	switch component {
	case "agent":
		url = "http://127.0.0.1:7082/metrics"
	case "coordinator":
		url = "http://" + CoordinatorIP + ":7081/metrics"
	case "lighthouse":
		ns, url = m.LH, "http://127.0.0.1:7082/metrics"
	default:
		return "", fmt.Errorf("no component %q", component)
	}
	resp, err := httpIn(ns, 10*time.Second).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s /metrics: %s", component, resp.Status)
	}
	return string(b), err
}

func (m *Mesh) waitHTTP(ctx context.Context, n *netlab.NS, url string) error {
	c := httpIn(n, time.Second)
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", url, resp.Status)
			}
		}
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return last
}

func field(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
