// Package dataplane benchmarks the pods' data plane side by side: the raw
// underlay, sealmesh, the stock nebula binary and wireguard-go, between the
// same two pods of a real mesh, with iperf3.
package dataplane

import (
	"testing"

	"github.com/sealmesh/sealmesh/test/tools"
)

// binDir holds the mesh's binaries, the stock nebula built from the module
// version sealmesh links, and wireguard-go, as go.mod pins them.
var binDir string

func TestMain(m *testing.M) {
	tools.BuildMain(m, &binDir, append(tools.MeshPackages,
		"github.com/slackhq/nebula/cmd/nebula",
		"golang.zx2c4.com/wireguard",
	)...)
}
