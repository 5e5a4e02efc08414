package meshctl_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/test/tools"
)

// meshctl is what a data owner downloads to verify a mesh: it talks HTTP to
// coordinators and never to their store, so it links none of the store
// backends' clients (client-go, etcd, grpc), which once made it 57 MB, and
// of Nebula only its certificates (config.yml for stock nebula hosts comes
// from agent/nebulaconfig, not the tunnel host).
func TestMeshctlDependencies(t *testing.T) {
	deps := tools.ForbidDeps(t, "github.com/sealmesh/sealmesh/cmd/meshctl",
		"k8s.io/client-go", "go.etcd.io/", "google.golang.org/grpc",
		"github.com/sealmesh/sealmesh/ca/store/etcdstore", "github.com/sealmesh/sealmesh/ca/store/kubestore",
		"github.com/hashicorp/memberlist", "github.com/sealmesh/sealmesh/agent/tunnel",
		"github.com/google/gopacket", "github.com/vishvananda/netlink", "github.com/prometheus/",
	)
	for _, d := range deps {
		if d == "github.com/slackhq/nebula" || strings.HasPrefix(d, "github.com/slackhq/nebula/") && !strings.HasPrefix(d, "github.com/slackhq/nebula/cert") {
			t.Errorf("meshctl links %s (Nebula beyond its certificates)", d)
		}
	}
}

// TestMeshctlSize: built as make build builds it, meshctl stays under 20 MB
// (it was 57 MB with the store backends, 19.9 MB with the tunnel host).
func TestMeshctlSize(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "meshctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/sealmesh/sealmesh/cmd/meshctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() >= 20e6 {
		t.Errorf("meshctl is %.1f MB, want under 20", float64(fi.Size())/1e6)
	}
	t.Logf("meshctl: %.1f MiB", float64(fi.Size())/(1<<20))
}
