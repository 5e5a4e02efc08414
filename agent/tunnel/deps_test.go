package tunnel_test

import (
	"testing"

	"github.com/sealmesh/sealmesh/test/tools"
)

// sealmesh-tunnel runs once per pod, and every package it links costs each pod
// its initialised globals (Go has no way to share them between processes): it
// links Nebula and nothing of the attestation libraries, client-go or
// memberlist (with the agent re-executed instead, each pod paid 13.4 MB of
// private memory; with this binary 9.3 MB, docs/BENCHMARKS.md).
func TestTunnelDependencies(t *testing.T) {
	tools.ForbidDeps(t, "github.com/sealmesh/sealmesh/cmd/sealmesh-tunnel",
		"github.com/google/go-sev-guest", "github.com/google/go-tdx-guest", "k8s.io/", "github.com/coreos/go-oidc",
		"github.com/hashicorp/memberlist", "github.com/sealmesh/sealmesh/attest", "github.com/sealmesh/sealmesh/agent/enrol",
		"go.etcd.io/",
	)
}
