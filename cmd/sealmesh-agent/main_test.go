package main

import (
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/internal/cli/clitest"
)

func TestConventions(t *testing.T) {
	clitest.ClearEnv(t)
	clitest.Conventions(t, command())
}

func TestHelp(t *testing.T) {
	clitest.ClearEnv(t)
	clitest.GoldenHelp(t, command())
}

func TestVersionsAndArguments(t *testing.T) {
	clitest.Versions(t, command)
}

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
