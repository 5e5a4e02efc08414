// Package docs checks the repository's documents against the code they
// describe.
package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/test/tools"
)

// testFuncs is every Test function declared in the repository.
func testFuncs(t *testing.T) map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func (Test\w+)\(`)
	out := map[string]bool{}
	err := filepath.WalkDir(tools.Root(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".cache" || d.Name() == "bin" || strings.HasPrefix(d.Name(), ".git")) {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// docs/security.md states the invariants A–J, each with the tests that hold
// it; every test it names exists (a renamed or deleted test leaves the
// invariant unheld on paper too).
func TestSecurityDocNamesInvariantTests(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(tools.Root(), "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	have := testFuncs(t)
	row := regexp.MustCompile(`(?m)^\| ([A-J]) \| \*\*[^|]+\| (.+) \|$`)
	seen := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		seen[m[1]] = true
		names := regexp.MustCompile("`(Test\\w+)`").FindAllStringSubmatch(m[2], -1)
		if len(names) == 0 {
			t.Errorf("invariant %s names no test", m[1])
		}
		for _, n := range names {
			if !have[n[1]] {
				t.Errorf("invariant %s: %s does not exist", m[1], n[1])
			}
		}
	}
	for _, x := range "ABCDEFGHIJ" {
		if !seen[string(x)] {
			t.Errorf("docs/security.md states no invariant %c", x)
		}
	}
	lic, err := os.ReadFile(filepath.Join(tools.Root(), "LICENSE"))
	if err != nil || !strings.Contains(string(lic), "Apache License\n                           Version 2.0, January 2004") {
		t.Errorf("LICENSE is not the Apache License 2.0: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tools.Root(), "SECURITY.md")); err != nil {
		t.Error(err)
	}
}
