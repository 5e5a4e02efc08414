package node

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/tunnel"
)

// Issue 29: pods that arrive together while every tunnel process is full
// share the one process started for them; each started its own before (ten
// pods at once made ten processes, each costing its own memory).
func TestPodsArrivingTogetherShareANewProcess(t *testing.T) {
	t.Parallel()
	// A stand-in for sealmesh-tunnel: ready at once, then idle.
	procs := &Processes{Command: []string{"/bin/sh", "-c", "echo " + tunnel.ReadyLine + "; exec sleep 60", "sh"},
		Dir: t.TempDir(), PerProcess: 16, StartTimeout: 10 * time.Second, Log: slog.New(slog.DiscardHandler)}
	const pods = 10
	hosts := make([]*tunnelHost, pods)
	var wg sync.WaitGroup
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := procs.place()
			if err != nil {
				t.Error(err)
				return
			}
			hosts[i] = h
		}()
	}
	wg.Wait()
	distinct := map[*tunnelHost]bool{}
	for _, h := range hosts {
		if h != nil {
			distinct[h] = true
		}
	}
	t.Cleanup(func() {
		for h := range distinct {
			procs.stopHost(h)
		}
	})
	if len(distinct) != 1 {
		t.Fatalf("%d pods arriving together started %d processes, want 1", pods, len(distinct))
	}
	for h := range distinct {
		if h.pods != pods {
			t.Errorf("process holds %d pods, want %d", h.pods, pods)
		}
	}
}
