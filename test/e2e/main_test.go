package e2e

import (
	"testing"

	"github.com/sealmesh/sealmesh/test/tools"
)

// binDir holds the binaries under test, built once for the package from this
// checkout, with the reference CNI plugins at the version go.mod pins.
var binDir string

func TestMain(m *testing.M) {
	tools.BuildMain(m, &binDir, append(tools.MeshPackages,
		"github.com/containernetworking/plugins/plugins/main/ptp",
		"github.com/containernetworking/plugins/plugins/meta/portmap",
		"github.com/containernetworking/plugins/plugins/meta/tuning",
		"github.com/containernetworking/cni/cnitool",
		// Stock Nebula at the version sealmesh links, for hosts without
		// sealmesh's agent (TestStockNebulaHost; nebula-cert is make
		// tools', whose module has its dependencies).
		"github.com/slackhq/nebula/cmd/nebula",
	)...)
}
