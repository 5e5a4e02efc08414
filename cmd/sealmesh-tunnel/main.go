// Command sealmesh-tunnel runs one pod's Nebula, started by the agent in the
// pod's network namespace with its configuration on stdin. It is a binary of
// its own, linking Nebula and little else, because one runs per pod: every
// package linked in costs each pod its initialised globals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sealmesh/sealmesh/agent/tunnel"
)

var version = "dev"

func main() {
	control := flag.String("control", "", "unix socket on which the agent sends renewed certificates and manifest changes")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	cfg, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err = tunnel.Run(ctx, log, cfg, version, func() { fmt.Println(tunnel.ReadyLine) }, *control)
		stop()
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "sealmesh-tunnel:", err)
		os.Exit(1)
	}
}
