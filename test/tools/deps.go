package tools

import (
	"os/exec"
	"strings"
	"testing"
)

// ForbidDeps fails t for every package the main package pkg links (go list
// -deps) under one of the prefixes: a binary that must stay small or quiet
// says so with the list.
func ForbidDeps(t testing.TB, pkg string, prefixes ...string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned %d packages; cannot judge", len(deps))
	}
	for _, d := range deps {
		for _, f := range prefixes {
			if strings.HasPrefix(d, f) {
				t.Errorf("%s links %s", pkg, d)
			}
		}
	}
	return deps
}
