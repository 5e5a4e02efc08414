package e2e

import (
	"debug/elf"
	"os"
	"path/filepath"
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

// TestBinariesStatic: the binaries under test are built as the image ships
// them, without cgo, so that the benchmarks time the starts a node pays
// (each pod's CNI call execs the plugin; a full tunnel process makes a new
// one). A dynamically linked Go binary loads libc and starts its threads
// through it: about 4 ms more per plugin exec on this machine.
func TestBinariesStatic(t *testing.T) {
	entries, err := os.ReadDir(binDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		f, err := elf.Open(filepath.Join(binDir, e.Name()))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked (it names an interpreter): build it with CGO_ENABLED=0, as the image does", e.Name())
			}
		}
		f.Close()
	}
	if len(entries) == 0 {
		t.Fatalf("no binaries in %s", binDir)
	}
}
