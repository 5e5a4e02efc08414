// Command sealmesh-tunnel hosts pods' Nebula instances for the node agent: the
// agent starts it, then asks it on its control socket to start, update and
// stop instances, each in its pod's network namespace. It is a binary of its
// own, linking Nebula and little else: the agent runs one for every few pods,
// and an agent upgrade or crash leaves it (and the pods' tunnels) running.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/internal/cli"
	"github.com/sealmesh/sealmesh/internal/logging"
)

var version = "dev"

func command() *cobra.Command {
	var control string
	var logOpts logging.Options
	cmd := &cobra.Command{
		Use:   "sealmesh-tunnel",
		Short: "Hosts pods' Nebula instances for the node agent (started by sealmesh-agent)",
		Long: `sealmesh-tunnel is started by sealmesh-agent, not by hand: the agent asks it on the
--control socket to start, update and stop pods' Nebula instances. It prints a ready
line on stdout once the socket is listening.`,
		Example:       "  sealmesh-tunnel --control /run/sealmesh/tunnel-0.sock",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logOpts.Logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			err = tunnel.Serve(ctx, log, control, version, func() { fmt.Fprintln(cmd.OutOrStdout(), tunnel.ReadyLine) })
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		},
	}
	logOpts.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&control, "control", "", "unix socket on which the agent starts, updates and stops instances (required)")
	cmd.MarkFlagRequired("control")
	cli.AddVersion(cmd, version)
	return cmd
}

func main() {
	if err := command().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sealmesh-tunnel:", err)
		os.Exit(1)
	}
}
