package k8s

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/sealmesh/sealmesh/internal/ociimage"
	"github.com/sealmesh/sealmesh/test/netlab"
	"github.com/sealmesh/sealmesh/test/tools"
)

// The node's addresses: its netns reaches an uplink netns over a veth pair.
const (
	NodeIP     = "10.201.0.2"
	uplinkIP   = "10.201.0.1"
	PodCIDR    = "10.244.0.0/24"
	ServiceIP  = "10.96.0.1"
	ServiceNet = "10.96.0.0/16"
	DNSIP      = "10.96.0.10"
	NodeName   = "e2e-node"
	// PauseImage is the sandbox image containerd is told to use.
	PauseImage = "registry.k8s.io/pause:3.10"
	// cgroupRoot keeps the kubelet's cgroups apart from the machine's.
	cgroupRoot = "sealmesh-e2e"
)

// Cluster is a running single-node cluster.
type Cluster struct {
	t   testing.TB
	Dir string
	Lab *netlab.Lab
	// Node is the netns every component runs in.
	Node *netlab.NS
	// Kubeconfig is the admin's (system:masters).
	Kubeconfig string
	// ConfDir and BinDir are the node's CNI directories.
	ConfDir, BinDir string
	sock            string
	pki             *pki
	kubelet         *exec.Cmd
	containerd      *exec.Cmd
	sharedNetns     bool
	// args are the node components' command lines, for Restart.
	args map[string][]string
}

// Options is what the cluster is made of besides the tools in .cache/bin.
type Options struct {
	// Plugins is the directory holding the reference CNI plugins (bridge,
	// host-local, loopback, portmap).
	Plugins string
	// Images are written as archives and imported into containerd.
	Images []ociimage.Image
}

// Up starts the cluster and waits until its node is Ready and its DNS runs.
// Everything it starts is stopped, and everything it made is removed, when
// the test ends.
func Up(t testing.TB, o Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Dir: t.TempDir(), Lab: netlab.New(fmt.Sprintf("smk8s%d", os.Getpid()%100000))}
	t.Cleanup(c.down)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The agent sees pods' netns files appear (mountPropagation:
	// HostToContainer), which needs /var/run/netns to be a shared mount, as
	// it is on a systemd host; here / is private. Before any netns is made.
	must(c.shareNetnsDir())
	var err error
	c.Node, err = c.Lab.NS("node")
	must(err)
	uplink, err := c.Lab.NS("uplink")
	must(err)
	must(netlab.Veth(uplink, "node0", uplinkIP+"/24", c.Node, "eth0", NodeIP+"/24"))
	must(c.Node.DefaultRoute(uplinkIP))
	must(c.Node.Forward())

	// Certificates.
	must(os.MkdirAll(c.path("pki"), 0o700))
	c.pki, err = newPKI(c.path("pki"))
	must(err)
	p := c.pki
	must(p.issue("apiserver", "kube-apiserver", nil, NodeIP, "127.0.0.1", ServiceIP, "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"))
	must(p.issue("admin", "e2e-admin", []string{"system:masters"}))
	must(p.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}))
	must(p.issue("controller-manager", "system:kube-controller-manager", nil))
	must(p.issue("scheduler", "system:kube-scheduler", nil))
	must(p.issue("kube-proxy", "system:kube-proxy", nil))
	must(p.issue("kubelet", "system:node:"+NodeName, []string{"system:nodes"}, NodeIP, NodeName))
	must(p.serviceAccountKey())
	server := "https://" + NodeIP + ":6443"
	kc := map[string]string{}
	for _, n := range []string{"admin", "controller-manager", "scheduler", "kube-proxy", "kubelet"} {
		kc[n], err = p.kubeconfig(n, server)
		must(err)
	}
	c.Kubeconfig = kc["admin"]

	bin := func(name string) string { return tools.Bin(t, name) }
	c.args = map[string][]string{}
	start := func(name string, args ...string) *exec.Cmd {
		t.Helper()
		c.args[name] = args
		cmd, err := c.Lab.Start(c.Node, c.path(name+".log"), bin(name), args...)
		must(err)
		return cmd
	}

	// etcd and the control plane.
	start("etcd", "--data-dir", c.path("etcd"), "--name", "e2e",
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "e2e=http://127.0.0.1:2380", "--log-level", "error")
	start("kube-apiserver", "--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", "0.0.0.0", "--advertise-address", NodeIP, "--secure-port", "6443",
		"--tls-cert-file", p.path("apiserver.crt"), "--tls-private-key-file", p.path("apiserver.key"),
		"--client-ca-file", p.path("ca.crt"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p.path("sa.pub"), "--service-account-signing-key-file", p.path("sa.key"),
		"--service-cluster-ip-range", ServiceNet, "--authorization-mode", "Node,RBAC", "--allow-privileged=true",
		"--kubelet-client-certificate", p.path("apiserver-kubelet-client.crt"), "--kubelet-client-key", p.path("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority", p.path("ca.crt"), "--kubelet-preferred-address-types", "InternalIP",
		"--enable-admission-plugins", "NodeRestriction")
	must(c.WaitFor("the API server", 90*time.Second, func() error { _, err := c.Kubectl("get", "--raw", "/readyz"); return err }))
	start("kube-controller-manager", "--kubeconfig", kc["controller-manager"], "--authentication-kubeconfig", kc["controller-manager"],
		"--authorization-kubeconfig", kc["controller-manager"], "--leader-elect=false", "--bind-address", "127.0.0.1",
		"--service-account-private-key-file", p.path("sa.key"), "--root-ca-file", p.path("ca.crt"),
		"--use-service-account-credentials=true", "--cluster-signing-cert-file", p.path("ca.crt"), "--cluster-signing-key-file", p.path("ca.key"),
		"--service-cluster-ip-range", ServiceNet)
	start("kube-scheduler", "--kubeconfig", kc["scheduler"], "--authentication-kubeconfig", kc["scheduler"],
		"--authorization-kubeconfig", kc["scheduler"], "--leader-elect=false", "--bind-address", "127.0.0.1")

	// The node: the primary CNI (reference bridge as a single .conf, as a
	// node's own CNI would write it), containerd, kubelet, kube-proxy.
	c.ConfDir, c.BinDir = c.path("net.d"), c.path("cni-bin")
	must(os.MkdirAll(c.ConfDir, 0o755))
	must(os.MkdirAll(c.BinDir, 0o755))
	for _, pl := range []string{"bridge", "host-local", "loopback", "portmap"} {
		must(copyFile(filepath.Join(o.Plugins, pl), filepath.Join(c.BinDir, pl)))
	}
	must(os.WriteFile(filepath.Join(c.ConfDir, "10-bridge.conf"), []byte(PrimaryConf), 0o644))
	c.sock = c.path("containerd", "containerd.sock")
	must(os.MkdirAll(c.path("containerd"), 0o700))
	must(os.WriteFile(c.path("containerd", "config.toml"), []byte(fmt.Sprintf(containerdConfig,
		c.path("containerd", "root"), c.path("containerd", "state"), c.sock, PauseImage, c.BinDir, c.ConfDir)), 0o600))
	var cmdErr error
	c.args["containerd"] = []string{"--config", c.path("containerd", "config.toml")}
	c.containerd, cmdErr = c.Lab.Start(c.Node, c.path("containerd.log"), "containerd", c.args["containerd"]...)
	must(cmdErr)
	must(c.WaitFor("containerd", 30*time.Second, func() error { _, err := c.ctr("version"); return err }))
	for _, img := range o.Images {
		archive := c.path(strings.NewReplacer("/", "_", ":", "_").Replace(img.Ref) + ".tar")
		must(img.WriteArchive(archive))
		if out, err := c.ctr("images", "import", "--no-unpack=false", archive); err != nil {
			t.Fatalf("ctr images import %s: %v\n%s", img.Ref, err, out)
		}
	}
	must(os.WriteFile(c.path("resolv.conf"), []byte("nameserver "+uplinkIP+"\n"), 0o644))
	must(os.WriteFile(c.path("kubelet.yaml"), []byte(fmt.Sprintf(kubeletConfig,
		p.path("ca.crt"), cgroupRoot, "unix://"+c.sock, DNSIP, c.path("resolv.conf"), NodeIP,
		p.path("kubelet.crt"), p.path("kubelet.key"))), 0o600))
	must(createCgroups(cgroupRoot))
	c.kubelet = start("kubelet", "--kubeconfig", kc["kubelet"], "--config", c.path("kubelet.yaml"),
		"--root-dir", c.path("kubelet"), "--hostname-override", NodeName, "--node-ip", NodeIP, "--v", "1")
	start("kube-proxy", "--kubeconfig", kc["kube-proxy"], "--hostname-override", NodeName, "--proxy-mode", "nftables",
		"--cluster-cidr", PodCIDR, "--conntrack-max-per-core", "0", "--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256")
	must(c.WaitFor("the node Ready", 2*time.Minute, func() error {
		out, err := c.Kubectl("get", "node", NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err == nil && out != "True" {
			err = fmt.Errorf("Ready=%q", out)
		}
		return err
	}))
	must(c.storage())
	return c
}

// Restart stops the node's kubelet or containerd (by the PID the cluster
// started, SIGTERM) and starts it again with the same arguments, logging to
// <name>-restarted.log; containers keep running across either, as on a node.
// It returns once the new process serves: containerd its socket, the kubelet
// the API server's requests. A kubelet started before the runtime answers
// exits ("validate CRI v1 runtime API"), and no systemd is here to start it
// again, so the order matters as it does on a node.
func (c *Cluster) Restart(name string) error {
	var cmd **exec.Cmd
	var serves func() error
	bin := name
	switch name {
	case "kubelet":
		cmd, bin = &c.kubelet, tools.Bin(c.t, "kubelet")
		// The path kubectl exec takes: the API server to the kubelet's port.
		serves = func() error {
			_, err := c.Kubectl("get", "--raw", "/api/v1/nodes/"+NodeName+"/proxy/healthz")
			return err
		}
	case "containerd":
		cmd = &c.containerd
		serves = func() error { _, err := c.ctr("version"); return err }
	default:
		return fmt.Errorf("restart %s: only kubelet and containerd", name)
	}
	netlab.Stop(*cmd, 30*time.Second)
	log := name + "-restarted"
	next, err := c.Lab.Start(c.Node, c.path(log+".log"), bin, c.args[name]...)
	if err != nil {
		return err
	}
	*cmd = next
	return c.WaitFor(name+" serving after its restart", 2*time.Minute, func() error {
		if syscall.Kill(-next.Process.Pid, 0) != nil {
			return fmt.Errorf("%w: %s exited after its restart:\n%s", errGaveUp, name, c.Log(log))
		}
		return serves()
	})
}

// PodLinks lists the interfaces of the pod whose netns holds ip, looked for
// in the runtime's named netns (/run/netns/cni-*).
func (c *Cluster) PodLinks(ip string) ([]string, error) {
	want := net.ParseIP(ip)
	files, err := filepath.Glob(filepath.Join(netnsDir, "cni-*"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		h, err := netns.GetFromPath(f)
		if err != nil {
			continue
		}
		nl, err := netlink.NewHandleAt(h)
		h.Close()
		if err != nil {
			continue
		}
		links, err := nl.LinkList()
		if err != nil {
			nl.Close()
			continue
		}
		var names []string
		found := false
		for _, l := range links {
			names = append(names, l.Attrs().Name)
			addrs, _ := nl.AddrList(l, netlink.FAMILY_ALL)
			for _, a := range addrs {
				found = found || a.IP.Equal(want)
			}
		}
		nl.Close()
		if found {
			return names, nil
		}
	}
	return nil, fmt.Errorf("no pod netns holds %s", ip)
}

// storage gives the cluster a default StorageClass with a few volumes made
// ahead (directories under the cluster's, writable by any user, as the
// local-path provisioner of kind and k3s makes them): what a cluster with
// storage offers a StatefulSet's volume claims.
func (c *Cluster) storage() error {
	var b strings.Builder
	b.WriteString(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
`)
	for i := range 6 {
		dir := c.path("volumes", fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			return err
		}
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: PersistentVolume
metadata: {name: local-%d}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: local
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: %s, type: Directory}
`, i, dir)
	}
	path := c.path("storage.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	_, err := c.Kubectl("apply", "-f", path)
	return err
}

func (c *Cluster) path(elem ...string) string {
	return filepath.Join(append([]string{c.Dir}, elem...)...)
}

// Log is the tail of one component's log.
func (c *Cluster) Log(name string) string { return tools.Tail(c.path(name + ".log")) }

// Kubectl runs kubectl as the admin from the node's netns.
func (c *Cluster) Kubectl(args ...string) (string, error) {
	return c.Run(tools.Bin(c.t, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
}

// Helm runs helm as the admin from the node's netns.
func (c *Cluster) Helm(args ...string) (string, error) {
	return c.Run(tools.Bin(c.t, "helm"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
}

func (c *Cluster) ctr(args ...string) (string, error) {
	return c.Run("ctr", append([]string{"--address", c.sock, "--namespace", "k8s.io"}, args...)...)
}

// Run runs a program in the node's netns and returns its trimmed output.
func (c *Cluster) Run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "HOME="+c.path("home"), "HELM_CACHE_HOME="+c.path("helm", "cache"),
		"HELM_CONFIG_HOME="+c.path("helm", "config"), "HELM_DATA_HOME="+c.path("helm", "data"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := c.Node.Do(cmd.Run)
	s := strings.TrimSpace(out.String())
	if err != nil {
		return s, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, s)
	}
	return s, nil
}

// errGaveUp, wrapped in cond's error, ends WaitFor at once: what it waits
// for cannot come any more.
var errGaveUp = errors.New("gave up")

// WaitFor polls cond every 500 ms until it holds or d passes (a bound
// against hangs, not a timing goal).
func (c *Cluster) WaitFor(what string, d time.Duration, cond func() error) error {
	var err error
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if err = cond(); err == nil {
			return nil
		}
		if errors.Is(err, errGaveUp) {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return fmt.Errorf("%s: not within %s: %w", what, d, err)
}

// down removes the pods' sandboxes through the runtime (so their networks
// are torn down by CNI DEL and their netns removed), stops every process the
// cluster started (the runtime's shims, found by the cluster's own socket in
// their command line, by PID), unmounts what the kubelet mounted and removes
// the kubelet's cgroups.
func (c *Cluster) down() {
	if c.t.Failed() {
		for _, n := range []string{"kubelet", "containerd", "kube-proxy", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			c.t.Logf("--- %s.log\n%s", n, c.Log(n))
		}
	}
	if c.kubelet != nil {
		netlab.Stop(c.kubelet, 10*time.Second)
	}
	if c.containerd != nil {
		if err := c.removeSandboxes(); err != nil {
			c.t.Errorf("cleanup: remove pod sandboxes: %v", err)
		}
	}
	if err := c.Lab.Close(); err != nil {
		c.t.Errorf("cleanup: %v", err)
	}
	if c.sock != "" {
		killByCmdline(c.path("containerd"))
	}
	unmountUnder(c.Dir)
	removeCgroups(cgroupRoot)
	if c.sharedNetns {
		syscall.Unmount(netnsDir, syscall.MNT_DETACH)
	}
}

const netnsDir = "/var/run/netns"

// shareNetnsDir makes netnsDir a shared mount (a bind mount of itself) unless
// it is a mount point already.
func (c *Cluster) shareNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == netnsDir || f[4] == "/run/netns") {
			return nil
		}
	}
	if err := syscall.Mount(netnsDir, netnsDir, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", netnsDir, err)
	}
	c.sharedNetns = true
	if err := syscall.Mount("", netnsDir, "", syscall.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", netnsDir, err)
	}
	return nil
}

func (c *Cluster) removeSandboxes() error {
	conn, err := grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := cri.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := rt.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range list.Items {
		if _, err := rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", s.Metadata.GetName(), err))
		}
		if _, err := rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.Metadata.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// killByCmdline kills the processes whose command line mentions marker (a
// path unique to this cluster): the runtime's shims, which outlive it.
func killByCmdline(marker string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountUnder unmounts every mount point under dir, deepest first.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	f.Close()
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// createCgroups makes the kubelet's cgroup root below every v1 controller
// (the kubelet wants it there); cpuset's needs its parent's CPUs and memory
// nodes before anything can join it.
func createCgroups(root string) error {
	ctrls, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	for _, ctrl := range ctrls {
		base := filepath.Join("/sys/fs/cgroup", ctrl.Name())
		if fi, err := os.Lstat(base); err != nil || !fi.IsDir() || fi.Mode()&os.ModeSymlink != 0 {
			continue
		}
		dir := filepath.Join(base, root)
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		if ctrl.Name() == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(base, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("cgroup %s: %w", f, err)
				}
			}
		}
	}
	return nil
}

// removeCgroups removes the cgroup root below every v1 controller, deepest
// first.
func removeCgroups(root string) {
	ctrls, _ := os.ReadDir("/sys/fs/cgroup")
	for _, ctrl := range ctrls {
		top := filepath.Join("/sys/fs/cgroup", ctrl.Name(), root)
		var dirs []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			syscall.Rmdir(dirs[i])
		}
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// PrimaryConf is the node's primary CNI configuration, as a bridge CNI would
// write it: one plugin, a .conf.
const PrimaryConf = `{
  "cniVersion": "1.0.0",
  "name": "e2e-pods",
  "type": "bridge",
  "bridge": "cni0",
  "isGateway": true,
  "ipMasq": false,
  "hairpinMode": true,
  "ipam": {
    "type": "host-local",
    "ranges": [[{"subnet": "` + PodCIDR + `"}]],
    "routes": [{"dst": "0.0.0.0/0"}]
  }
}
`

// containerdConfig: root, state, socket, sandbox image, CNI bin and conf
// directories. restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE.
const containerdConfig = `version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`

// kubeletConfig: client CA, cgroup root, runtime endpoint, cluster DNS,
// resolv.conf, address, serving certificate and key. cgroup v1 here.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
cgroupRoot: /%s
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: %q
clusterDNS: [%q]
clusterDomain: cluster.local
resolvConf: %q
address: %q
tlsCertFile: %q
tlsPrivateKeyFile: %q
readOnlyPort: 0
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {}
localStorageCapacityIsolation: false
`
