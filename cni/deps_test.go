package cni

import (
	"os/exec"
	"strings"
	"testing"
)

// The plugin is exec'd for every pod: it must stay small and quiet, so it links
// neither the attestation libraries (go-tdx-guest logs to stdout from init, and
// stdout is the CNI result), nor client-go, memberlist or Nebula.
func TestPluginDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/sealmesh/sealmesh/cmd/sealmesh-cni").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned %d packages; cannot judge", len(deps))
	}
	forbidden := []string{
		"github.com/google/go-sev-guest", "github.com/google/go-tdx-guest", "k8s.io/client-go",
		"github.com/hashicorp/memberlist", "github.com/slackhq/nebula", "github.com/sealmesh/sealmesh/attest",
		"github.com/sealmesh/sealmesh/ca/",
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("sealmesh-cni links %s", d)
			}
		}
	}
}
