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

// Issue 29: once the running processes are full, the agent starts the
// next one in the background, so the next pod's ADD does not wait for a
// process to start; an emptied process is stopped unless it is the room
// that is left.
func TestSpareProcess(t *testing.T) {
	t.Parallel()
	procs := &Processes{Command: []string{"/bin/sh", "-c", "echo " + tunnel.ReadyLine + "; exec sleep 60", "sh"},
		Dir: t.TempDir(), PerProcess: 2, StartTimeout: 10 * time.Second, Log: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() {
		procs.mu.Lock()
		hosts := procs.hosts
		procs.hosts = nil
		procs.mu.Unlock()
		for _, h := range hosts {
			procs.stopHost(h)
		}
	})
	// waitHosts waits for the spare's start in the background.
	waitHosts := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); len(procs.Hosts()) != want && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if got := len(procs.Hosts()); got != want {
			t.Fatalf("%d processes, want %d", got, want)
		}
	}
	place := func() *tunnelHost {
		t.Helper()
		h, err := procs.place()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	a := place()
	waitHosts(1) // room for one more: no spare yet
	if b := place(); b != a {
		t.Fatal("the second pod did not share the first one's process")
	}
	waitHosts(2) // full: the spare starts
	procs.mu.Lock()
	starting := procs.starting != nil
	procs.mu.Unlock()
	if starting {
		t.Fatal("the spare is still starting after it was counted")
	}
	c := place()
	if c == a {
		t.Fatal("the third pod went to a full process")
	}
	waitHosts(2) // the spare took it and has room for one more

	procs.unplace(c)
	waitHosts(2) // emptied, but the only room left besides a's: kept
	procs.unplace(a)
	procs.unplace(a)
	waitHosts(1) // a emptied while c's process has room: a stopped
	if got := procs.Hosts(); len(got) != 1 || got[0] != c.id {
		t.Fatalf("processes %v, want only %s", got, c.id)
	}
}
