// Package testenv gates tests on what the machine allows.
package testenv

import (
	"os"
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
