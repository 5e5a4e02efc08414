// Package ha tests the coordinator cluster in network namespaces: three
// coordinator processes over one real etcd, agents enrolling under load while
// coordinators are killed, partitioned and restarted.
package ha

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds the binaries under test, built once from this checkout.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sealmesh-ha-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := 1
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "github.com/sealmesh/sealmesh/cmd/sealmesh-coordinator")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
