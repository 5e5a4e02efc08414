package main

import (
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
