package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/cniinstall"
	"github.com/sealmesh/sealmesh/test/mesh"
)

// TestInstallCNI: on a node whose primary CNI is the reference bridge, written
// as a single-plugin .conf, `sealmesh-agent install-cni` puts sealmesh-cni
// into a bin directory and chains it into that configuration; the runtime's
// library (libcni) then loads the configuration from the directory and pods
// get their Nebula interfaces and reach each other over them; --uninstall puts
// the original file back byte for byte.
func TestInstallCNI(t *testing.T) {
	m := up(t)
	ctx := context.Background()
	confDir, binDirPods := t.TempDir(), t.TempDir()

	// The primary: the mesh's bridge as the node's own CNI would write it.
	if err := m.UseChain(mesh.ChainBridgeOnly); err != nil {
		t.Fatal(err)
	}
	list, err := m.Conflist()
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(list, &l); err != nil {
		t.Fatal(err)
	}
	single := l.Plugins[0]
	single["cniVersion"], single["name"] = l.CNIVersion, "node-net"
	orig, _ := json.MarshalIndent(single, "", "  ")
	primary := filepath.Join(confDir, "10-bridge.conf")
	if err := os.WriteFile(primary, orig, 0o644); err != nil {
		t.Fatal(err)
	}

	install := func(args ...string) {
		t.Helper()
		cmd := exec.Command(m.Bin("sealmesh-agent"), append([]string{"install-cni", "--cni-conf-dir", confDir, "--cni-bin-dir", binDirPods}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sealmesh-agent %v: %v\n%s", cmd.Args[1:], err, out)
		}
	}
	// Bad flags: a clear error, and the node's files untouched.
	for _, bad := range [][]string{{"--mtu", "-1"}, {"--uninstall-when-gone", "sealmesh/agent"}, {"--watch", "--uninstall-when-gone", "no-slash"}} {
		cmd := exec.Command(m.Bin("sealmesh-agent"), append([]string{"install-cni", "--cni-conf-dir", confDir, "--cni-bin-dir", binDirPods, "--plugin", m.Bin("sealmesh-cni")}, bad...)...)
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "--") {
			t.Fatalf("install-cni %v: %v %s, want a clear error", bad, err, out)
		}
		if got, _ := os.ReadFile(primary); string(got) != string(orig) {
			t.Fatalf("install-cni %v changed %s", bad, primary)
		}
		if ents, _ := os.ReadDir(binDirPods); len(ents) != 0 {
			t.Fatalf("install-cni %v installed the plugin", bad)
		}
	}
	install("--plugin", m.Bin("sealmesh-cni"), "--agent-socket", m.AgentSocket())
	if err := cniinstall.Installed(confDir, binDirPods); err != nil {
		t.Fatal(err)
	}
	path, err := cniinstall.Primary(confDir)
	if err != nil {
		t.Fatal(err)
	}
	// Only the installed sealmesh-cni: the bin directory the runtime uses
	// comes first.
	if err := m.UseConfFile(path, binDirPods); err != nil {
		t.Fatal(err)
	}
	a, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.AddPod(ctx, "pod-b")
	if err != nil {
		t.Fatal(err)
	}
	if !a.OverlayIP.IsValid() || !b.OverlayIP.IsValid() {
		t.Fatalf("pods without overlay addresses: %v %v", a.OverlayIP, b.OverlayIP)
	}
	if res, err := a.NS.Ping(b.OverlayIP, 3, 5*time.Second); err != nil || res.Received == 0 {
		t.Fatalf("ping %s over nebula: %v %v", b.OverlayIP, res, err)
	}
	for _, p := range []*mesh.Pod{a, b} {
		if err := m.DelPod(ctx, p); err != nil {
			t.Fatal(err)
		}
		delete(m.Pods, p.Name)
	}

	install("--uninstall")
	got, err := os.ReadFile(primary)
	if err != nil || string(got) != string(orig) {
		t.Fatalf("after --uninstall %s is %q (%v), want the original", primary, got, err)
	}
	if ents, _ := os.ReadDir(confDir); len(ents) != 1 {
		t.Fatalf("after --uninstall %d files in %s, want 1", len(ents), confDir)
	}
	if _, err := os.Stat(filepath.Join(binDirPods, cniinstall.PluginType)); !os.IsNotExist(err) {
		t.Fatalf("the plugin binary after --uninstall: %v", err)
	}
}
