package cni

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// Issue 29: every exec of the plugin runs the initialisation of the
// packages it links before main, whatever the command. Sealmesh's own do
// none: cniapi compiled its five validation patterns there (234
// allocations, about a third of a millisecond of each exec). The runtime
// reports each package's initialisation under GODEBUG=inittrace=1; a
// package that does none is not listed.
func TestPluginInitDoesNoWork(t *testing.T) {
	dir := t.TempDir()
	if out, err := tools.BuildStatic(dir, "github.com/sealmesh/sealmesh/cmd/sealmesh-cni"); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "sealmesh-cni")
	var stderr bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION", "GODEBUG=inittrace=1")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("VERSION: %v\n%s", err, stderr.String())
	}
	listed := 0
	for line := range strings.Lines(stderr.String()) {
		// init <package> @<start> ms, <clock> ms clock, <bytes> bytes, <allocs> allocs
		f := strings.Fields(line)
		if len(f) != 11 || f[0] != "init" {
			continue
		}
		listed++
		if strings.HasPrefix(f[1], "github.com/sealmesh/") {
			t.Errorf("%s initialises with %s bytes in %s allocations at every exec of the plugin", f[1], f[7], f[9])
		}
	}
	if listed < 10 {
		t.Fatalf("%d packages in the init trace; cannot judge:\n%s", listed, stderr.String())
	}
}
