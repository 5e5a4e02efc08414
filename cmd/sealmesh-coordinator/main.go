// Command sealmesh-coordinator serves enrolment for one mesh.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/store"
)

func main() {
	var listen, stateDir string
	cmd := &cobra.Command{
		Use:           "sealmesh-coordinator",
		Short:         "Attests workloads and issues their Nebula certificates",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			st, err := store.OpenFile(stateDir)
			if err != nil {
				return err
			}
			c, err := coordinator.New(log, st, time.Now)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			srv := &http.Server{Addr: listen, Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(sctx)
			}()
			log.Info("coordinator listening", "addr", listen, "state", stateDir)
			if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":7080", "address of the enrolment API")
	cmd.Flags().StringVar(&stateDir, "state-dir", "/var/lib/sealmesh/coordinator", "directory of the file store")
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "sealmesh-coordinator:", err)
		os.Exit(1)
	}
}
