// Package ha tests the coordinator cluster in network namespaces: three
// coordinator processes over one real etcd, agents enrolling under load while
// coordinators are killed, partitioned and restarted.
package ha

import (
	"testing"

	"github.com/sealmesh/sealmesh/test/tools"
)

// binDir holds the binaries under test, built once from this checkout.
var binDir string

func TestMain(m *testing.M) {
	tools.BuildMain(m, &binDir, "github.com/sealmesh/sealmesh/cmd/sealmesh-coordinator")
}
