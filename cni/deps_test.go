package cni

import (
	"testing"

	"github.com/sealmesh/sealmesh/test/tools"
)

// The plugin is exec'd for every pod: it must stay small and quiet, so it links
// neither the attestation libraries (go-tdx-guest logs to stdout from init, and
// stdout is the CNI result), nor client-go, memberlist or Nebula, nor net/http
// (with crypto/tls and HTTP/2, whose package initialisation cost every exec
// about 2 ms before main: cniapi's client speaks HTTP/1.0 itself).
func TestPluginDependencies(t *testing.T) {
	tools.ForbidDeps(t, "github.com/sealmesh/sealmesh/cmd/sealmesh-cni",
		"github.com/google/go-sev-guest", "github.com/google/go-tdx-guest", "k8s.io/client-go",
		"github.com/hashicorp/memberlist", "github.com/slackhq/nebula", "github.com/sealmesh/sealmesh/attest",
		"github.com/sealmesh/sealmesh/ca/", "net/http", "crypto/tls",
	)
}
