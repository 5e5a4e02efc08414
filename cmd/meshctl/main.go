// Command meshctl is the operator's and data owner's CLI.
package main

import (
	"fmt"
	"os"

	"github.com/sealmesh/sealmesh/meshctl"
)

var version = "dev"

func main() {
	meshctl.Version = version
	if err := meshctl.Command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "meshctl:", err)
		os.Exit(meshctl.ExitCode(err))
	}
}
