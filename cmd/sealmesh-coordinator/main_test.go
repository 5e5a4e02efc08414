package main

import (
	"testing"

	"github.com/sealmesh/sealmesh/internal/cli/clitest"
)

// TestCommandLine: argument checks, examples, golden --help, versions
// (internal/cli/clitest).
func TestCommandLine(t *testing.T) { clitest.Check(t, command) }
