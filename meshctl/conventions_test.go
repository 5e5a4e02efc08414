package meshctl_test

import (
	"testing"

	"github.com/sealmesh/sealmesh/internal/cli/clitest"
	"github.com/sealmesh/sealmesh/meshctl"
)

func TestConventions(t *testing.T) {
	clitest.ClearEnv(t)
	clitest.Conventions(t, meshctl.Command())
}

func TestHelp(t *testing.T) {
	clitest.ClearEnv(t)
	clitest.GoldenHelp(t, meshctl.Command())
}
