package meshctl_test

import (
	"testing"

	"github.com/sealmesh/sealmesh/internal/cli/clitest"
	"github.com/sealmesh/sealmesh/meshctl"
)

// TestCommandLine: argument checks, examples, golden --help, versions
// (internal/cli/clitest).
func TestCommandLine(t *testing.T) { clitest.Check(t, meshctl.Command) }
