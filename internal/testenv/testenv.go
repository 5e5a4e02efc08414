// Package testenv gates tests on what the machine allows.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// RequireRoot skips a test that needs root and network namespaces when run
// without them; under CI=true it fails instead, so CI cannot pass by skipping.
// The unit tier (-short) skips it always: make test runs it afterwards.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root: not in the unit tier (go test -short, make unit)")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces, TUN devices) and CI=true forbids skipping it")
	}
	t.Skip("needs root for network namespaces and TUN devices; run as root (make test does)")
}

// RequireTool returns the path of a program a test runs (from a Debian
// package make test installs: see the Makefile's deps), skipping the test
// without it; under CI=true it fails instead. The unit tier skips it always.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("runs %s: not in the unit tier (go test -short, make unit)", name)
	}
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("this test runs %s, which is not installed, and CI=true forbids skipping it (make deps installs it)", name)
	}
	t.Skipf("%s is not installed (make deps installs it)", name)
	return ""
}
