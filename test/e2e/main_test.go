package e2e

import (
	"testing"

	"github.com/sealmesh/sealmesh/test/tools"
)

// binDir holds the binaries under test, built once for the package from this
// checkout, with the reference CNI plugins at the version go.mod pins.
var binDir string

func TestMain(m *testing.M) {
	tools.BuildMain(m, &binDir,
		"github.com/sealmesh/sealmesh/cmd/sealmesh-coordinator",
		"github.com/sealmesh/sealmesh/cmd/sealmesh-agent",
		"github.com/sealmesh/sealmesh/cmd/sealmesh-tunnel",
		"github.com/sealmesh/sealmesh/cmd/sealmesh-cni",
		"github.com/sealmesh/sealmesh/cmd/sealmesh-lighthouse",
		"github.com/sealmesh/sealmesh/cmd/meshctl",
		"github.com/containernetworking/plugins/plugins/main/bridge",
		"github.com/containernetworking/plugins/plugins/ipam/host-local",
		"github.com/containernetworking/plugins/plugins/main/ptp",
		"github.com/containernetworking/plugins/plugins/meta/portmap",
		"github.com/containernetworking/plugins/plugins/meta/tuning",
		"github.com/containernetworking/cni/cnitool",
	)
}
