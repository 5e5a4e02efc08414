package node

import (
	"log/slog"
	"slices"
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
	procs := standIn(t, 16)
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
	if len(distinct) != 1 {
		t.Fatalf("%d pods arriving together started %d processes, want 1", pods, len(distinct))
	}
	for h := range distinct {
		if h.pods != pods {
			t.Errorf("process holds %d pods, want %d", h.pods, pods)
		}
	}
}

// standIn is Processes over a stand-in for sealmesh-tunnel: ready at once,
// then idle. The processes still running are stopped when the test ends.
func standIn(t *testing.T, per int) *Processes {
	procs := &Processes{Command: []string{"/bin/sh", "-c", "echo " + tunnel.ReadyLine + "; exec sleep 60", "sh"},
		Dir: t.TempDir(), PerProcess: per, StartTimeout: 10 * time.Second, Log: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() {
		procs.settled()
		for _, h := range procs.hostList() {
			procs.stopHost(h)
		}
	})
	return procs
}

// settled waits for a background start, if one is under way.
func (t *Processes) settled() {
	t.mu.Lock()
	wait := t.starting
	t.mu.Unlock()
	if wait != nil {
		<-wait.done
	}
}

// podCounts are the pods of each process, most first.
func (t *Processes) podCounts() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []int{}
	for _, h := range t.hosts {
		out = append(out, h.pods)
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

func (t *Processes) hostList() []*tunnelHost {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*tunnelHost
	for _, h := range t.hosts {
		out = append(out, h)
	}
	return out
}

// Issue 29: the pod that takes a process's last room starts the next process
// in the background, so the pod after it finds one running. Before, that pod
// waited for the start (one ADD in sixteen in a sequence was 20–45 ms
// slower). The spare is the one process without pods, and there is none once
// the node's last pod has gone.
func TestTakingTheLastRoomStartsASpare(t *testing.T) {
	t.Parallel()
	procs := standIn(t, 2)
	var placed []*tunnelHost
	place := func() {
		t.Helper()
		h, err := procs.place()
		if err != nil {
			t.Fatal(err)
		}
		placed = append(placed, h)
	}
	check := func(step string, want ...int) {
		t.Helper()
		procs.settled()
		if got := procs.podCounts(); !slices.Equal(got, want) {
			t.Fatalf("%s: pods per process %v, want %v", step, got, want)
		}
	}

	place()
	check("one pod", 1)
	place()
	check("first process full", 2, 0)
	spare := procs.hostList()
	place()
	if placed[2] == placed[0] {
		t.Fatal("third pod placed in the full process")
	}
	if !slices.Contains(spare, placed[2]) {
		t.Fatal("third pod placed in a process started for it, not in the spare")
	}
	check("third pod in the spare", 2, 1)
	place()
	check("second process full", 2, 2, 0)

	// Emptied while no other process is without pods: kept as the spare.
	place()
	check("fifth pod in the spare", 2, 2, 1)
	procs.unplace(placed[4])
	check("spare emptied again", 2, 2, 0)
	if !placed[4].proc.Alive() {
		t.Fatal("the only process without pods was stopped")
	}
	// Emptied beside a spare: stopped.
	procs.unplace(placed[0])
	procs.unplace(placed[1])
	check("first process emptied beside a spare", 2, 0)
	if placed[0].proc.Alive() {
		t.Error("a process emptied beside a spare still runs")
	}
	// The node's last pod gone: no process left.
	procs.unplace(placed[3])
	procs.unplace(placed[2])
	check("node without pods")
	for _, h := range []*tunnelHost{placed[2], placed[4]} {
		if h.proc.Alive() {
			t.Errorf("process %s still runs on a node without pods", h.id)
		}
	}
}

// A spare whose start ends after the node's last pod went is stopped, not
// kept.
func TestSpareOfAnEmptiedNodeIsStopped(t *testing.T) {
	t.Parallel()
	procs := standIn(t, 1)
	h, err := procs.place()
	if err != nil {
		t.Fatal(err)
	}
	procs.unplace(h)
	procs.settled()
	if got := procs.podCounts(); len(got) != 0 {
		t.Fatalf("pods per process %v on a node without pods, want no process", got)
	}
}

// A spare that died is forgotten and another started: neither kept as the
// node's one process without pods, nor counted as room.
func TestDeadSpareIsReplaced(t *testing.T) {
	t.Parallel()
	procs := standIn(t, 2)
	kill := func(h *tunnelHost) {
		t.Helper()
		if err := h.proc.Stop(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	spare := func(step string) *tunnelHost {
		t.Helper()
		procs.settled()
		for _, h := range procs.hostList() {
			if h.pods == 0 && h.proc.Alive() {
				return h
			}
		}
		t.Fatalf("%s: no running spare; pods per process %v", step, procs.podCounts())
		return nil
	}
	var placed []*tunnelHost
	for range 2 {
		h, err := procs.place()
		if err != nil {
			t.Fatal(err)
		}
		placed = append(placed, h)
	}
	dead := spare("first process full")
	kill(dead)
	procs.unplace(placed[1])
	if _, err := procs.place(); err != nil {
		t.Fatal(err)
	}
	if s := spare("first process full again"); s == dead {
		t.Fatal("the dead spare is still the spare")
	}
	if got := procs.podCounts(); !slices.Equal(got, []int{2, 0}) {
		t.Fatalf("pods per process %v, want [2 0]", got)
	}

	// A process that died with its last pod is not kept as the spare, and
	// one is started in its place.
	h, err := procs.place()
	if err != nil {
		t.Fatal(err)
	}
	if h.pods != 1 {
		t.Fatalf("third pod placed in a process with %d pods, want the spare", h.pods)
	}
	kill(h)
	procs.unplace(h)
	if got := spare("second process died"); got == h {
		t.Fatal("a dead process kept as the spare")
	}
}

// A process that fails to start fails every pod that waited for it, at
// once, and leaves nothing behind.
func TestFailedStartFailsItsWaiters(t *testing.T) {
	t.Parallel()
	procs := standIn(t, 16)
	procs.Command = []string{"/bin/sh", "-c", "exit 3", "sh"}
	const pods = 5
	errs := make(chan error, pods)
	for range pods {
		go func() {
			_, err := procs.place()
			errs <- err
		}()
	}
	for range pods {
		if err := <-errs; err == nil {
			t.Error("a pod was placed though no process could start")
		}
	}
	procs.settled()
	if got := procs.podCounts(); len(got) != 0 {
		t.Errorf("pods per process %v after failed starts, want no process", got)
	}
}
