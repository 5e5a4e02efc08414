package main

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/klog/v2"

	"github.com/sealmesh/sealmesh/internal/cli/clitest"
)

// TestCommandLine: argument checks, examples, golden --help, versions
// (internal/cli/clitest).
func TestCommandLine(t *testing.T) { clitest.Check(t, command) }

// Subcommands take no stray words either (node start used to run a node).
func TestStrayWords(t *testing.T) {
	for _, args := range [][]string{{"node", "start", "--tee", "simulated:/nonexistent"}, {"pod", "x", "--tee", "snp"}, {"install-cni", "now"}} {
		root := command()
		root.SetArgs(args)
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "unknown command") {
			t.Errorf("sealmesh-agent %v: %v", args, err)
		}
	}
}

// Issue 28: client-go's klog text broke the agent's JSON log stream. The
// agent routes klog through its own logger: what client-go logs arrives as
// JSON objects in the agent's format.
func TestKlogLogsAsJSON(t *testing.T) {
	var stderr bytes.Buffer
	root := command()
	root.SetErr(&stderr)
	root.SetOut(io.Discard)
	root.SetArgs([]string{"node", "--tee", "simulated:" + filepath.Join(t.TempDir(), "none"), "--log-format", "json"})
	if err := root.Execute(); err == nil {
		t.Fatal("started without a simulated device")
	}
	stderr.Reset()
	klog.InfoS("client-go reflector", "resource", "pods")
	klog.Warningf("plain klog %d", 1)
	klog.Flush()
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), stderr.String())
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec["msg"] == nil || rec["level"] == nil {
			t.Errorf("not a JSON log record: %q (%v)", l, err)
		}
	}
}
