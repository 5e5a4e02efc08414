// Package clitest checks a command tree against the conventions of package
// cli, and its --help against golden files.
package clitest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/internal/cli"
)

var update = flag.Bool("update", false, "rewrite the golden --help files")

// generated are cobra's own commands, which follow its conventions.
func generated(c *cobra.Command) bool {
	for p := c; p != nil; p = p.Parent() {
		if p.Name() == "help" || p.Name() == "completion" {
			return true
		}
	}
	return false
}

// Conventions fails t for a command without a short description, a runnable
// command that does not declare its arguments (cobra would take stray words
// silently) or has no Example, and a tree without --version and version.
func Conventions(t *testing.T, root *cobra.Command) {
	t.Helper()
	root.InitDefaultHelpCmd()
	if root.Version == "" {
		t.Errorf("%s has no --version", root.Name())
	}
	if c, _, err := root.Find([]string{"version"}); err != nil || c == root {
		t.Errorf("%s has no version subcommand", root.Name())
	}
	cli.Walk(root, func(c *cobra.Command) {
		if generated(c) {
			return
		}
		if c.Short == "" {
			t.Errorf("%q: no Short", c.CommandPath())
		}
		if !c.Runnable() {
			if c.HasSubCommands() {
				t.Errorf("%q: a group not made with cli.Group (a stray word prints help and exits 0)", c.CommandPath())
			}
			return
		}
		if c.Args == nil {
			t.Errorf("%q: does not declare its arguments (Args)", c.CommandPath())
		}
		if c.Example == "" && !cli.IsGroup(c) {
			t.Errorf("%q: no Example", c.CommandPath())
		}
	})
}

// Help is the --help text of every command in the tree, in order.
func Help(root *cobra.Command) string {
	var all bytes.Buffer
	cli.Walk(root, func(c *cobra.Command) {
		if generated(c) {
			return
		}
		var b bytes.Buffer
		c.SetOut(&b)
		c.SetErr(&b)
		c.Help()
		all.WriteString("=== " + c.CommandPath() + " --help\n")
		all.Write(b.Bytes())
		all.WriteString("\n")
	})
	return all.String()
}

// GoldenHelp compares Help(root) with testdata/help.golden (go test -update
// rewrites it): a change to any command's flags or text shows in review.
func GoldenHelp(t *testing.T, root *cobra.Command) {
	t.Helper()
	root.InitDefaultHelpCmd()
	got := Help(root)
	path := filepath.Join("testdata", "help.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, strings.Split(t.Name(), "/")[0])
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("--help differs from %s at line %d:\n got: %q\nwant: %q\n(go test -run %s -update rewrites it after a deliberate change)", path, i+1, g, w, strings.Split(t.Name(), "/")[0])
			}
		}
	}
}

// clearEnv unsets the variables sealmesh's flags take defaults from, so that
// help text and defaults do not depend on the caller's environment.
func clearEnv(t *testing.T) {
	for _, v := range []string{"SEALMESH_COORDINATOR", "SEALMESH_COORDINATOR_POLICY", "SEALMESH_MESH_ID", "NODE_NAME", "POD_NAMESPACE", "POD_NAME", "POD_UID"} {
		t.Setenv(v, "")
	}
}

// Versions checks that `version`, `version -o json` and `--version` report
// the build, and that a stray word is an error rather than a run: before
// issue 28, `sealmesh-coordinator version` started a coordinator.
func Versions(t *testing.T, newRoot func() *cobra.Command) {
	t.Helper()
	exec := func(args ...string) (string, error) {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(args)
		err := root.Execute()
		return out.String(), err
	}
	name := newRoot().Name()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec(args...)
		if err != nil || !strings.HasPrefix(out, name+" version ") || !strings.Contains(out, "go:") {
			t.Errorf("%s %s: %v\n%s", name, args[0], err, out)
		}
	}
	out, err := exec("version", "-o", "json")
	var in struct{ Version, Go string }
	if err != nil || json.Unmarshal([]byte(out), &in) != nil || in.Version == "" || in.Go == "" {
		t.Errorf("%s version -o json: %v\n%s", name, err, out)
	}
	if _, err := exec("version", "-o", "wide"); err == nil {
		t.Errorf("%s version -o wide: accepted", name)
	}
	if _, err := exec("typo"); err == nil || !strings.Contains(err.Error(), `unknown command "typo"`) {
		t.Errorf("%s typo: %v, want an unknown-command error", name, err)
	}
}

// Check runs Conventions, GoldenHelp and Versions on the tree newRoot
// makes, with the environment its flags take defaults from cleared.
func Check(t *testing.T, newRoot func() *cobra.Command) {
	clearEnv(t)
	t.Run("conventions", func(t *testing.T) { Conventions(t, newRoot()) })
	t.Run("help", func(t *testing.T) { GoldenHelp(t, newRoot()) })
	t.Run("versions", func(t *testing.T) { Versions(t, newRoot) })
}
