package k8s

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/internal/testenv"
	"github.com/sealmesh/sealmesh/test/mesh"
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
		"github.com/sealmesh/sealmesh/test/k8s/netcheck",
	)...)
}

// images are the cluster's: the sandbox, CoreDNS, and sealmesh's own (every
// binary, and netcheck for the workload pods).
func images(t *testing.T) []Image {
	files := map[string]string{}
	for _, b := range []string{"sealmesh-coordinator", "sealmesh-agent", "sealmesh-tunnel", "sealmesh-cni", "sealmesh-lighthouse", "meshctl", "netcheck"} {
		files["/"+b] = filepath.Join(binDir, b)
	}
	return []Image{
		{Ref: PauseImage, Files: map[string]string{"/pause": filepath.Join(binDir, "pause")}, Entrypoint: []string{"/pause"}},
		{Ref: CoreDNSImage, Files: map[string]string{"/coredns": tools.Bin(t, "coredns")}, Entrypoint: []string{"/coredns"}},
		{Ref: SealmeshImage, Files: files, Entrypoint: []string{"/netcheck"}},
	}
}

// SealmeshImage is the image the chart is installed with.
const SealmeshImage = "docker.io/sealmesh/sealmesh:e2e"

// TestKubernetes installs sealmesh with its Helm chart into a single-node
// cluster made of real components, and follows a user: the coordinators
// become ready and recover from each other, the DaemonSet chains the plugin
// into the node's bridge configuration, two workload pods get Nebula
// interfaces and talk over them, deleting a pod releases its address, and
// uninstalling restores the node's configuration. The rendered manifests are
// validated against the same API server.
func TestKubernetes(t *testing.T) {
	if os.Getenv("SEALMESH_E2E_K8S") == "" {
		t.Skip("a whole cluster: run it with make e2e-k8s (SEALMESH_E2E_K8S=1)")
	}
	testenv.RequireRoot(t)
	c := Up(t, Options{Plugins: binDir, Images: images(t)})
	dump := func() {
		for _, n := range []string{"kubelet", "containerd", "kube-apiserver"} {
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
			dump()
			t.Fatal(err)
		}
	}
	fail(c.CoreDNS())
	orig, err := os.ReadFile(filepath.Join(c.ConfDir, "10-bridge.conf"))
	fail(err)

	// The rendered manifests pass the API server's validation and admission.
	_, err = c.Kubectl("create", "namespace", "sealmesh")
	fail(err)
	_, err = c.Kubectl("apply", "--dry-run=server", "-n", "sealmesh", "-f", filepath.Join(root(), "deploy", "manifests", "sealmesh.yaml"))
	fail(err)

	// The simulated TEEs (development): one for the coordinators, one for
	// the node; and the lighthouse's join token.
	meshctl := filepath.Join(binDir, "meshctl")
	coordTEE, nodeTEE := filepath.Join(c.Dir, "coordinator-tee"), filepath.Join(c.Dir, "node-tee")
	coordOut, err := c.Run(meshctl, "sim-tee", "init", "--dir", coordTEE, "--image", "sealmesh-coordinator")
	fail(err)
	nodeOut, err := c.Run(meshctl, "sim-tee", "init", "--dir", nodeTEE, "--image", "sealmesh-workload")
	fail(err)
	for _, s := range [][2]string{{"coordinator-tee", coordTEE}, {"node-tee", nodeTEE}} {
		_, err = c.Kubectl("-n", "sealmesh", "create", "secret", "generic", s[0], "--from-file", s[1])
		fail(err)
	}
	coordPolicy := map[string]any{"simulated": map[string]any{
		"measurements": []string{field(coordOut, "measurement")}, "rootFingerprint": field(coordOut, "rootFingerprint"),
	}}
	policy, _ := json.Marshal(map[string]any{"coordinator": map[string]any{"policy": coordPolicy}})
	values := filepath.Join(c.Dir, "values.json")
	fail(os.WriteFile(values, policy, 0o644))

	_, err = c.Helm("install", "sealmesh", filepath.Join(root(), "deploy", "helm", "sealmesh"), "-n", "sealmesh", "-f", values,
		"--set", "image.repository=docker.io/sealmesh/sealmesh", "--set", "image.tag=e2e", "--set", "image.pullPolicy=Never",
		"--set", "tee=simulated", "--set", "simulatedTEE.secret=coordinator-tee",
		"--set", "agent.tee=simulated", "--set", "agent.simulatedTEESecret=node-tee",
		"--set", "agent.cniConfDir="+c.ConfDir, "--set", "agent.cniBinDir="+c.BinDir, "--set", "agent.runDir="+filepath.Join(c.Dir, "sealmesh-run"),
		"--set", "lighthouse.enabled=true", "--set", "lighthouse.tokenSecret=lighthouse-token")
	fail(err)

	// The coordinators run (not ready: no mesh yet).
	fail(c.WaitFor("three coordinators running", 3*time.Minute, func() error {
		return podsPhase(c, "sealmesh", "app.kubernetes.io/component=coordinator", 3, "Running")
	}))
	// The owner creates the mesh at one coordinator; the others recover the
	// keys from it.
	ownerKey := filepath.Join(c.Dir, "owner.key")
	keyOut, err := c.Run(meshctl, "keygen", "--kind", "owner", "--out", ownerKey)
	fail(err)
	man, err := mesh.ManifestFor(field(nodeOut, "rootFingerprint"), field(keyOut, "publicKey"), coordPolicy, NodeIP+":4242")
	fail(err)
	manPath := filepath.Join(c.Dir, "manifest.json")
	fail(os.WriteFile(manPath, man, 0o644))
	policyPath := filepath.Join(c.Dir, "coordinator-policy.json")
	pj, _ := json.Marshal(coordPolicy)
	fail(os.WriteFile(policyPath, pj, 0o644))
	ip0, err := c.Kubectl("-n", "sealmesh", "get", "pod", "sealmesh-coordinator-0", "-o", "jsonpath={.status.podIP}")
	fail(err)
	coord := "https://" + ip0 + ":7080"
	_, err = c.Run(meshctl, "--coordinator", coord, "--coordinator-policy", policyPath, "manifest", "set", manPath, "--key", ownerKey, "--out-dir", c.Dir)
	fail(err)
	// The lighthouse's join token, as an operator makes it; its pod waits
	// for the Secret.
	tokenFile := filepath.Join(c.Dir, "lighthouse.token")
	_, err = c.Run(meshctl, "--coordinator", coord, "--coordinator-policy", policyPath, "token", "create", "--role", "lighthouse", "--name", mesh.LighthouseName, "--key", ownerKey, "--out", tokenFile)
	fail(err)
	_, err = c.Kubectl("-n", "sealmesh", "create", "secret", "generic", "lighthouse-token", "--from-file", "token="+tokenFile)
	fail(err)
	fail(c.WaitFor("three coordinators ready", 3*time.Minute, func() error {
		return podsReady(c, "sealmesh", "app.kubernetes.io/component=coordinator", 3)
	}))
	fail(c.WaitFor("the agent and the lighthouse ready", 3*time.Minute, func() error {
		if err := podsReady(c, "sealmesh", "app.kubernetes.io/component=agent", 1); err != nil {
			return err
		}
		return podsReady(c, "sealmesh", "app.kubernetes.io/component=lighthouse", 1)
	}))
	conflist, err := os.ReadFile(filepath.Join(c.ConfDir, "10-bridge.conflist"))
	fail(err)
	if !strings.Contains(string(conflist), `"sealmesh-cni"`) {
		t.Fatalf("the DaemonSet did not chain sealmesh-cni:\n%s", conflist)
	}

	// Two workload pods talk over their Nebula interfaces.
	for _, p := range []string{"pod-a", "pod-b"} {
		_, err = c.Kubectl("run", p, "--image", SealmeshImage, "--image-pull-policy", "Never", "--restart", "Never", "--", "serve", "8080")
		fail(err)
	}
	fail(c.WaitFor("workload pods running", 3*time.Minute, func() error { return podsPhase(c, "default", "run", 2, "Running") }))
	ipA, err := c.Kubectl("exec", "pod-a", "--", "/netcheck", "addr", "nebula1")
	fail(err)
	var answer string
	fail(c.WaitFor("pod-b reaches pod-a over Nebula", time.Minute, func() error {
		answer, err = c.Kubectl("exec", "pod-b", "--", "/netcheck", "dial", ipA+":8080")
		return err
	}))
	if answer != "hello from pod-a" {
		t.Fatalf("pod-b got %q from %s, want pod-a's answer", answer, ipA)
	}

	// Deleting a pod releases its address.
	_, err = c.Kubectl("delete", "pod", "pod-a", "--wait=true")
	fail(err)
	fail(c.WaitFor("pod-a's lease released", time.Minute, func() error {
		out, err := c.Run(meshctl, "--coordinator", coord, "--coordinator-policy", policyPath, "status", "--key", ownerKey, "--host", "default/pod-a", "-o", "json")
		if err != nil {
			return err
		}
		if strings.Contains(out, `"workload": "default/pod-a"`) {
			return fmt.Errorf("still leased")
		}
		return nil
	}))
	_, err = c.Kubectl("delete", "pod", "pod-b", "--wait=true")
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

func root() string {
	wd, _ := os.Getwd()
	return filepath.Join(wd, "..", "..")
}

// field is the value of "key: value" in meshctl's output.
func field(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// podsPhase checks that n pods matching selector (a label key or key=value)
// are in phase.
func podsPhase(c *Cluster, ns, selector string, n int, phase string) error {
	out, err := c.Kubectl("-n", ns, "get", "pods", "-l", selector, "-o", "jsonpath={.items[*].status.phase}")
	if err != nil {
		return err
	}
	if got := strings.Fields(out); len(got) != n || strings.Count(out, phase) != n {
		return fmt.Errorf("%s pods: %v", selector, got)
	}
	return nil
}
