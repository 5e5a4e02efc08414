package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/internal/ociimage"
	"github.com/sealmesh/sealmesh/internal/testenv"
	meshctlpkg "github.com/sealmesh/sealmesh/meshctl"
	"github.com/sealmesh/sealmesh/test/tools"
)

var binDir string

func TestMain(m *testing.M) {
	// Static binaries: the images hold nothing else.
	os.Setenv("CGO_ENABLED", "0")
	tools.BuildMain(m, &binDir, append(tools.MeshPackages,
		"github.com/containernetworking/plugins/plugins/main/loopback",
		"github.com/containernetworking/plugins/plugins/meta/portmap",
		"github.com/sealmesh/sealmesh/test/k8s/pause",
	)...)
}

// BusyboxImage stands in for the registry's busybox, which the quickstart's
// workload pods run: Debian's static busybox with its applets linked.
const BusyboxImage = "docker.io/library/busybox:1.36"

// images are the cluster's besides sealmesh's own, which the quickstart
// builds and loads (make image): the sandbox, CoreDNS, busybox.
func images(t *testing.T) []ociimage.Image {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox (Debian's busybox-static; make deps-k8s installs it): %v", err)
	}
	links := map[string]string{}
	for _, a := range []string{"sh", "sleep", "ping", "ip", "cat", "ls", "wget", "nc"} {
		links["/bin/"+a] = "busybox"
	}
	return []ociimage.Image{
		{Ref: PauseImage, Files: map[string]string{"/pause": filepath.Join(binDir, "pause")}, Entrypoint: []string{"/pause"}},
		{Ref: CoreDNSImage, Files: map[string]string{"/coredns": tools.Bin(t, "coredns")}, Entrypoint: []string{"/coredns"}},
		{Ref: BusyboxImage, Files: map[string]string{"/bin/busybox": busybox}, Links: links, Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}},
	}
}

// quickstart is docs/quickstart.md's shell blocks, in order.
func quickstart(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(tools.Root(), "docs", "quickstart.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?ms)^```sh\n(.*?)^```").FindAllStringSubmatch(string(b), -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) < 5 {
		t.Fatalf("docs/quickstart.md has %d sh blocks", len(blocks))
	}
	return strings.Join(blocks, "\n")
}

// runDir is the agent's node directory at the chart's default, which the
// quickstart keeps.
const runDir = "/run/sealmesh"

// TestKubernetes installs sealmesh into a single-node cluster made of real
// components by running docs/quickstart.md's commands as written (image,
// Secrets, policy, chart, manifest, verify, two pods pinging over Nebula),
// then what a platform team does to a cluster: the rendered manifests pass
// the API server's validation; CoreDNS restarts while the mesh selects only
// an app namespace; a pod annotated out runs without Nebula; every
// coordinator deleted at once comes back ready and the pods keep talking;
// kubelet and containerd restarts leave every pod attached; a deleted pod's
// address is released; uninstalling restores the node's configuration.
func TestKubernetes(t *testing.T) {
	if os.Getenv("SEALMESH_E2E_K8S") == "" {
		t.Skip("a whole cluster: run it with make e2e-k8s (SEALMESH_E2E_K8S=1)")
	}
	testenv.RequireRoot(t)
	if _, err := os.Stat(runDir); err == nil {
		t.Fatalf("%s exists: another sealmesh agent uses this machine's default directory", runDir)
	}
	t.Cleanup(func() { os.RemoveAll(runDir) })
	// The cluster's logs are printed after a failure; the reason is printed
	// again after them (this cleanup runs last), where CI's tail shows it.
	var failure error
	t.Cleanup(func() {
		if failure != nil {
			t.Logf("--- TestKubernetes failed: %v", failure)
		}
	})
	c := Up(t, Options{Plugins: binDir, Images: images(t)})
	dump := func() {
		for _, n := range []string{"kubelet", "containerd", "kube-apiserver", "kubelet-restarted", "containerd-restarted"} {
			t.Logf("--- %s.log\n%s", n, c.Log(n))
		}
		out, _ := c.Kubectl("get", "pods", "-A", "-o", "wide")
		t.Logf("--- pods\n%s", out)
		out, _ = c.Kubectl("get", "events", "-A", "--sort-by=.lastTimestamp")
		t.Logf("--- events\n%s", out)
		for _, sel := range []string{"component=coordinator", "component=agent", "component=lighthouse"} {
			out, _ = c.Kubectl("-n", "sealmesh", "logs", "-l", "app.kubernetes.io/"+sel, "--all-containers", "--tail", "30", "--prefix")
			t.Logf("--- logs %s\n%s", sel, out)
		}
	}
	fail := func(err error) {
		t.Helper()
		if err != nil {
			failure = err
			dump()
			t.Fatal(err)
		}
	}
	fail(c.CoreDNS())
	orig, err := os.ReadFile(filepath.Join(c.ConfDir, "10-bridge.conf"))
	fail(err)

	// The rendered manifests pass the API server's validation and admission
	// (in a namespace of their own: the quickstart makes "sealmesh").
	_, err = c.Kubectl("create", "namespace", "dry-run")
	fail(err)
	_, err = c.Kubectl("apply", "--dry-run=server", "-n", "dry-run", "-f", filepath.Join(tools.Root(), "deploy", "manifests", "sealmesh.yaml"))
	fail(err)

	// The quickstart, verbatim, from the checkout, with the node's CNI
	// directories and containerd's socket where this cluster keeps them.
	script := filepath.Join(c.Dir, "quickstart.sh")
	fail(os.WriteFile(script, []byte("set -euxo pipefail\n"+quickstart(t)), 0o755))
	cmd := exec.Command("bash", script)
	cmd.Dir = tools.Root()
	// HOME is the cluster's (the quickstart's files go there), Go's caches
	// stay this machine's: the node has no route to the module proxy.
	goEnv, err := exec.Command("go", "env", "GOPATH", "GOMODCACHE", "GOCACHE").Output()
	fail(err)
	g := strings.Fields(string(goEnv))
	cmd.Env = append(os.Environ(), "GOPATH="+g[0], "GOMODCACHE="+g[1], "GOCACHE="+g[2], "GOPROXY=off",
		"HOME="+c.path("home"), "KUBECONFIG="+c.Kubeconfig,
		"PATH="+filepath.Dir(tools.Bin(t, "kubectl"))+":"+os.Getenv("PATH"),
		"CNI_CONF_DIR="+c.ConfDir, "CNI_BIN_DIR="+c.BinDir, "CONTAINERD_ADDRESS="+c.sock,
		"HELM_CACHE_HOME="+c.path("helm", "cache"), "HELM_CONFIG_HOME="+c.path("helm", "config"), "HELM_DATA_HOME="+c.path("helm", "data"))
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = c.Node.Do(cmd.Run)
	out := buf.String()
	t.Logf("--- quickstart\n%s", out)
	if err != nil {
		fail(fmt.Errorf("docs/quickstart.md: %w", err))
	}
	if !regexp.MustCompile(`3 packets transmitted, 3 packets received`).MatchString(out) {
		fail(fmt.Errorf("the quickstart's ping did not get its answers"))
	}
	work := c.path("home", "sealmesh-quickstart")
	meshctl := filepath.Join(tools.Root(), "bin", "meshctl")
	coord := func() string {
		ip, err := c.Kubectl("-n", "sealmesh", "get", "pod", "sealmesh-coordinator-0", "-o", "jsonpath={.status.podIP}")
		fail(err)
		return "https://" + ip + ":7080"
	}
	meshctlAt := func(args ...string) (string, error) {
		return c.Run(meshctl, append([]string{"--coordinator", coord(), "--coordinator-policy-file", filepath.Join(work, "coordinator-policy.json")}, args...)...)
	}
	conflist, err := os.ReadFile(filepath.Join(c.ConfDir, "10-bridge.conflist"))
	fail(err)
	if !strings.Contains(string(conflist), `"sealmesh-cni"`) || !strings.Contains(string(conflist), `"excludeNamespaces"`) {
		t.Fatalf("the DaemonSet did not chain sealmesh-cni with its exclusions:\n%s", conflist)
	}
	// Bootstrap safety: the coordinators (the release's namespace) were
	// passed through, not attached.
	fail(noNebula(c, "sealmesh", "sealmesh-coordinator-0"))

	ping := func(what string) {
		t.Helper()
		// Retried as a whole: right after a kubelet restart its exec
		// server is not up yet.
		fail(c.WaitFor(what, 2*time.Minute, func() error {
			out, err := c.Kubectl("exec", "pod-a", "--", "ip", "-4", "-o", "addr", "show", "nebula1")
			if err != nil {
				return err
			}
			f := strings.Fields(out)
			if len(f) < 4 {
				return fmt.Errorf("pod-a's nebula1: %q", out)
			}
			ipA, _, _ := strings.Cut(f[3], "/")
			_, err = c.Kubectl("exec", "pod-b", "--", "ping", "-c", "1", "-W", "2", ipA)
			return err
		}))
	}

	// CoreDNS (kube-system, excluded; no role selects it) starts again.
	_, err = c.Kubectl("-n", "kube-system", "delete", "pod", "-l", "k8s-app=kube-dns", "--wait=true")
	fail(err)
	fail(c.WaitFor("CoreDNS running again", 3*time.Minute, func() error {
		return podsReady(c, "kube-system", "k8s-app=kube-dns", 1)
	}))
	// A pod annotated out runs, without Nebula.
	_, err = c.Kubectl("run", "pod-out", "--image", BusyboxImage, "--annotations", "sealmesh.io/attach=false", "--", "sleep", "3600")
	fail(err)
	_, err = c.Kubectl("wait", "pod/pod-out", "--for=condition=Ready", "--timeout=3m")
	fail(err)
	fail(noNebula(c, "default", "pod-out"))

	// Every coordinator deleted at once: they come back ready (their sealed
	// seeds on their volumes, freshness confirmed by each other), and the
	// pods keep talking throughout.
	_, err = c.Kubectl("-n", "sealmesh", "delete", "pod", "-l", "app.kubernetes.io/component=coordinator", "--wait=false")
	fail(err)
	ping("pod-b reaches pod-a with every coordinator gone")
	fail(c.WaitFor("three coordinators ready again", 5*time.Minute, func() error {
		return podsReady(c, "sealmesh", "app.kubernetes.io/component=coordinator", 3)
	}))
	ping("pod-b reaches pod-a after the coordinators' restart")

	// kubelet and containerd restarted: every pod keeps its interface,
	// and new pods attach.
	fail(c.Restart("containerd"))
	fail(c.Restart("kubelet"))
	fail(c.WaitFor("the node Ready after the restarts", 3*time.Minute, func() error {
		return podsReady(c, "default", "run=pod-a", 1)
	}))
	ping("pod-b reaches pod-a after kubelet and containerd restarts")
	_, err = c.Kubectl("run", "pod-c", "--image", BusyboxImage, "--", "sleep", "3600")
	fail(err)
	_, err = c.Kubectl("wait", "pod/pod-c", "--for=condition=Ready", "--timeout=3m")
	fail(err)
	_, err = c.Kubectl("exec", "pod-c", "--", "ip", "link", "show", "nebula1")
	fail(err)

	// Deleting a pod releases its address.
	_, err = c.Kubectl("delete", "pod", "pod-a", "--wait=true")
	fail(err)
	fail(c.WaitFor("pod-a's lease released", time.Minute, func() error {
		// meshctl status exits ExitNoMatch when --host matches no live host.
		out, err := meshctlAt("status", "--owner-key", filepath.Join(work, "owner.key"), "--host", "default/pod-a", "-o", "json")
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit) && exit.ExitCode() == meshctlpkg.ExitNoMatch:
			return nil
		case err != nil:
			return err
		}
		return fmt.Errorf("still leased: %s", out)
	}))
	_, err = c.Kubectl("delete", "pod", "pod-b", "pod-c", "pod-out", "--wait=true")
	fail(err)

	// Uninstalling restores the node's configuration, byte for byte.
	_, err = c.Helm("uninstall", "sealmesh", "-n", "sealmesh", "--wait")
	fail(err)
	fail(c.WaitFor("the original bridge configuration back", 2*time.Minute, func() error {
		b, err := os.ReadFile(filepath.Join(c.ConfDir, "10-bridge.conf"))
		if err != nil {
			return err
		}
		if string(b) != string(orig) {
			return fmt.Errorf("10-bridge.conf differs")
		}
		if _, err := os.Stat(filepath.Join(c.ConfDir, "10-bridge.conflist")); err == nil {
			return fmt.Errorf("10-bridge.conflist still there")
		}
		return nil
	}))
}

// noNebula checks that a running pod has no Nebula interface, from the
// node: the pod's netns, found by its sandbox's PID.
func noNebula(c *Cluster, ns, pod string) error {
	ip, err := c.Kubectl("-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}")
	if err != nil || ip == "" {
		return fmt.Errorf("pod %s/%s has no IP: %v", ns, pod, err)
	}
	links, err := c.PodLinks(ip)
	if err != nil {
		return err
	}
	if slices.Contains(links, "nebula1") {
		return fmt.Errorf("pod %s/%s has nebula1 (links %v), want it passed through", ns, pod, links)
	}
	return nil
}
