package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds the binaries under test, built once for the package from this
// checkout, with the reference CNI plugins at the version go.mod pins.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sealmesh-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := 1
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func build(dir string) error {
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
		"github.com/sealmesh/sealmesh/cmd/sealmesh-coordinator",
		"github.com/sealmesh/sealmesh/cmd/sealmesh-agent",
		"github.com/sealmesh/sealmesh/cmd/sealmesh-cni",
		"github.com/sealmesh/sealmesh/cmd/sealmesh-lighthouse",
		"github.com/sealmesh/sealmesh/cmd/meshctl",
		"github.com/containernetworking/plugins/plugins/main/bridge",
		"github.com/containernetworking/plugins/plugins/ipam/host-local",
	)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}
