// Command sealmesh-tunnel hosts pods' Nebula instances for the node agent: the
// agent starts it, then asks it on its control socket to start, update and
// stop instances, each in its pod's network namespace. It is a binary of its
// own, linking Nebula and little else: the agent runs one for every few pods,
// and an agent upgrade or crash leaves it (and the pods' tunnels) running.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sealmesh/sealmesh/agent/tunnel"
)

var version = "dev"

func main() {
	control := flag.String("control", "", "unix socket on which the agent starts, updates and stops instances")
	flag.Parse()
	if *control == "" {
		fmt.Fprintln(os.Stderr, "sealmesh-tunnel: --control is required")
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := tunnel.Serve(ctx, log, *control, version, func() { fmt.Println(tunnel.ReadyLine) })
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "sealmesh-tunnel:", err)
		os.Exit(1)
	}
}
