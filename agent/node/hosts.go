package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

// DefaultPodsPerProcess is how many pods' Nebula instances share one tunnel
// process. One process costs about 9 MiB of its own (most of it tables a
// Nebula dependency fills at start); an instance in a shared one well under
// one (docs/BENCHMARKS.md). A process that crashes takes its pods' tunnels
// with it until the agent restores them, so the number bounds that too.
const DefaultPodsPerProcess = 16

// Processes is Tunnels as sealmesh-tunnel processes, each running up to
// PerProcess pods' instances, recorded under Dir so that a restarted agent
// adopts them.
type Processes struct {
	// Command starts a tunnel process; it gets --control <socket> appended.
	Command    []string
	Dir        string
	PerProcess int
	// StartTimeout bounds a process's start and an instance's.
	StartTimeout time.Duration
	Log          *slog.Logger

	// mu guards hosts and their counts; no I/O is made under it.
	mu    sync.Mutex
	hosts map[string]*tunnelHost
	// adopted is what Adopt found running, for Settle.
	adopted map[string]map[string]bool
	// starting is the process start under way, if any.
	starting *start
}

// start is a process start under way. Its error is set, and the process
// counted in, before done is closed.
type start struct {
	done chan struct{}
	// waiting counts the pods waiting for the process; a start none waits
	// for is the spare.
	waiting int
	err     error
}

// tunnelHost is one sealmesh-tunnel process and the pods placed in it.
type tunnelHost struct {
	id   string
	proc *tunnel.Process
	// pods counts the pods placed here, attached or being attached; the
	// process stops when it drops to zero, unless it is kept as the spare
	// (unplace).
	pods   int
	closed bool
}

// hostRecord is what the agent keeps on disk of a tunnel process
// (Dir/<id>.json), so a restarted agent adopts it.
type hostRecord struct {
	PID      int    `json:"pid"`
	PIDStart uint64 `json:"pidStart"`
}

func (t *Processes) control(id string) string { return filepath.Join(t.Dir, id+".sock") }

func (t *Processes) host(id string) *tunnelHost {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hosts[id]
}

// Start places the instance in the fullest process with room (starting a
// new one when all are full) and starts it there.
func (t *Processes) Start(ctx context.Context, id string, req *tunnel.AddRequest) (string, tunnel.Started, error) {
	if req.Netns == selfNetns {
		// Pod mode. A tunnel process runs in a namespace of its own
		// (tunnel.Start), where "self" is not this process's: it is
		// named by this process's PID. The instance holds it open from
		// its start, so the name need not outlive this process.
		r := *req
		r.Netns = fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
		req = &r
	}
	h, err := t.place()
	if err != nil {
		return "", tunnel.Started{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, t.StartTimeout)
	took, err := tunnel.AddInstance(sctx, t.control(h.id), id, req)
	cancel()
	if err != nil {
		// It may have started after all (a timeout): stop it either way.
		t.Stop(h.id, id)
		return "", tunnel.Started{}, err
	}
	return h.id, took, nil
}

// Stop removes instance id from its process and gives its room back.
func (t *Processes) Stop(host, id string) {
	h := t.host(host)
	if h == nil {
		return
	}
	if h.proc.Alive() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := tunnel.RemoveInstance(ctx, t.control(host), id); err != nil {
			t.Log.Warn("stop tunnel", "tunnel", host, "instance", id, "err", err)
		}
		cancel()
	}
	t.unplace(h)
}

// Drop gives back the room of an instance that is gone.
func (t *Processes) Drop(host string) {
	if h := t.host(host); h != nil {
		t.unplace(h)
	}
}

// Alive reports whether the process runs.
func (t *Processes) Alive(host string) bool {
	h := t.host(host)
	return h != nil && h.proc.Alive()
}

// Instances lists what the process runs.
func (t *Processes) Instances(ctx context.Context, host string) ([]tunnel.InstanceInfo, error) {
	return tunnel.Instances(ctx, t.control(host))
}

// Hosts lists the processes, sorted.
func (t *Processes) Hosts() []string {
	t.mu.Lock()
	out := make([]string, 0, len(t.hosts))
	for id := range t.hosts {
		out = append(out, id)
	}
	t.mu.Unlock()
	slices.Sort(out)
	return out
}

// Metrics reads a process's Nebula metrics.
func (t *Processes) Metrics(ctx context.Context, host string) (io.ReadCloser, error) {
	return tunnel.Metrics(ctx, t.control(host))
}

// Update hands an instance a new configuration.
func (t *Processes) Update(ctx context.Context, host, id string, cfg *nebulaconfig.Nebula) error {
	return tunnel.UpdateInstance(ctx, t.control(host), id, cfg)
}

// Prove has an instance prove possession of its key.
func (t *Processes) Prove(ctx context.Context, host, id string, req *tunnel.ProveRequest) ([]byte, error) {
	return tunnel.ProveInstance(ctx, t.control(host), id, req)
}

// place reserves room for one pod in a tunnel process, starting a new one
// when all are full. Taking the last free room starts the next process in
// the background (a spare), so the pod after it does not wait for a start.
func (t *Processes) place() (*tunnelHost, error) {
	for {
		t.mu.Lock()
		if h := t.roomLocked(); h != nil {
			h.pods++
			t.spareLocked()
			t.mu.Unlock()
			return h, nil
		}
		// One process starts at a time: pods that arrive together while
		// every process is full wait for it and share it, instead of
		// starting one each (ten pods at once made ten processes).
		s := t.startLocked()
		s.waiting++
		t.mu.Unlock()
		<-s.done
		if s.err != nil {
			return nil, s.err
		}
	}
}

// roomLocked is the fullest running process with room, if any: filling the
// fullest first keeps the processes few. t.mu is held.
func (t *Processes) roomLocked() *tunnelHost {
	var best *tunnelHost
	for _, h := range t.hosts {
		if usable(h) && h.pods < t.PerProcess && (best == nil || h.pods > best.pods) {
			best = h
		}
	}
	return best
}

// spareLocked starts a spare process in the background when no process has
// room left, and forgets a spare that died. A process start (exec, the Go
// runtime, Nebula's tables) made the ADD that waited for it 27–30 ms slower
// here (one in sixteen in a sequence, BenchmarkCNILatency's
// ADD-when-full-over-p50-ms); the spare costs the node one process without
// pods (about 1 MiB of PSS beside others, whose code it shares) while every
// other is full. t.mu is held.
func (t *Processes) spareLocked() {
	for id, h := range t.hosts {
		if h.pods <= 0 && !h.closed && !h.proc.Alive() {
			// A spare that died: no pod's Drop will forget it.
			h.closed = true
			delete(t.hosts, id)
			go t.stopHost(h)
		}
	}
	if t.roomLocked() == nil {
		t.startLocked()
	}
}

func usable(h *tunnelHost) bool { return !h.closed && h.proc.Alive() }

// startLocked is the process start under way, begun if there is none. The
// process starts outside the lock and is counted in once it runs. t.mu is
// held.
func (t *Processes) startLocked() *start {
	if t.starting == nil {
		t.starting = &start{done: make(chan struct{})}
		go t.start(t.starting)
	}
	return t.starting
}

// start starts a process and counts it in, without pods: the pods waiting
// for it place themselves. A spare (no pod waited) is kept only while the
// node has pods and no other process without pods.
func (t *Processes) start(s *start) {
	defer close(s.done)
	h, err := t.startHost()
	t.mu.Lock()
	t.starting = nil
	s.err = err
	keep := err == nil && (s.waiting > 0 || t.podsLocked() > 0 && t.podlessLocked(nil) == nil)
	if keep {
		if t.hosts == nil {
			t.hosts = map[string]*tunnelHost{}
		}
		t.hosts[h.id] = h
	}
	spare := s.waiting == 0
	t.mu.Unlock()
	switch {
	case err != nil && spare:
		t.Log.Warn("spare tunnel process", "err", err)
	case err == nil && !keep:
		h.closed = true
		t.stopHost(h)
	}
}

// podsLocked counts the pods placed on the node. t.mu is held.
func (t *Processes) podsLocked() int {
	n := 0
	for _, h := range t.hosts {
		n += h.pods
	}
	return n
}

// podlessLocked is a running process without pods other than but, if there
// is one. t.mu is held.
func (t *Processes) podlessLocked(but *tunnelHost) *tunnelHost {
	for _, h := range t.hosts {
		if h != but && h.pods <= 0 && usable(h) {
			return h
		}
	}
	return nil
}

// unplace gives a pod's room back. A running process its last pod left is
// kept as the spare while the node has other pods and no other process
// without pods; otherwise it is stopped, and with the node's last pod so is
// the spare.
func (t *Processes) unplace(h *tunnelHost) {
	t.mu.Lock()
	h.pods--
	var stop []*tunnelHost
	if h.pods <= 0 && !h.closed {
		spare := t.podlessLocked(h)
		last := t.podsLocked() == 0
		if last || spare != nil {
			stop = append(stop, h)
		}
		if last && spare != nil {
			stop = append(stop, spare)
		}
	}
	for _, s := range stop {
		s.closed = true
		delete(t.hosts, s.id)
	}
	if t.podsLocked() > 0 {
		t.spareLocked() // the process stopped may have been the only room
	}
	t.mu.Unlock()
	for _, s := range stop {
		t.stopHost(s)
	}
}

func (t *Processes) startHost() (*tunnelHost, error) {
	b := make([]byte, 4)
	rand.Read(b)
	id := "t" + hex.EncodeToString(b)
	if err := os.MkdirAll(t.Dir, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(t.Dir, id+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	// The child holds its own descriptor for its stderr.
	defer logFile.Close()
	args := append(slices.Clone(t.Command[1:]), "--control", t.control(id))
	proc, err := tunnel.Start(t.Command[0], args, logFile, t.StartTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	rec, _ := json.Marshal(hostRecord{PID: proc.Pid(), PIDStart: proc.StartTime()})
	if err := atomicfile.Write(t.Dir, id+".json", rec); err != nil {
		proc.Stop(5 * time.Second)
		return nil, err
	}
	t.Log.Info("tunnel process started", "tunnel", id, "pid", proc.Pid())
	return &tunnelHost{id: id, proc: proc}, nil
}

func (t *Processes) stopHost(h *tunnelHost) {
	if err := h.proc.Stop(10 * time.Second); err != nil {
		t.Log.Warn("stop tunnel process", "tunnel", h.id, "err", err)
	}
	for _, ext := range []string{".json", ".sock"} {
		if err := os.Remove(filepath.Join(t.Dir, h.id+ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Log.Warn("forget tunnel process", "tunnel", h.id, "err", err)
		}
	}
	t.Log.Info("tunnel process stopped", "tunnel", h.id)
}

// Adopt takes up the tunnel processes a previous agent started, with what
// each runs; records of processes that are gone are dropped.
func (t *Processes) Adopt(ctx context.Context) map[string]map[string]bool {
	running := map[string]map[string]bool{}
	entries, err := os.ReadDir(t.Dir)
	if err != nil {
		return running
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(t.Dir, e.Name()))
		var rec hostRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		var proc *tunnel.Process
		if err == nil {
			proc, err = tunnel.Adopt(rec.PID, rec.PIDStart)
		}
		var list []tunnel.InstanceInfo
		if err == nil {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			list, err = t.Instances(lctx, id)
			cancel()
			if err != nil {
				proc.Stop(5 * time.Second) // running but not answering: of no use
			}
		}
		if err != nil {
			t.Log.Warn("tunnel process gone", "tunnel", id, "err", err)
			os.Remove(filepath.Join(t.Dir, e.Name()))
			os.Remove(t.control(id))
			continue
		}
		t.mu.Lock()
		if t.hosts == nil {
			t.hosts = map[string]*tunnelHost{}
		}
		t.hosts[id] = &tunnelHost{id: id, proc: proc}
		t.mu.Unlock()
		running[id] = instanceSet(list)
		t.Log.Info("tunnel process re-adopted", "tunnel", id, "pid", rec.PID, "instances", len(list))
	}
	t.mu.Lock()
	t.adopted = running
	t.mu.Unlock()
	return running
}

// Keep counts an adopted instance on host.
func (t *Processes) Keep(host string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h := t.hosts[host]; h != nil {
		h.pods++
	}
}

// Settle stops instances no pod claimed (an agent that died between
// starting one and recording it) and processes left empty.
func (t *Processes) Settle(ctx context.Context, claimed map[string]bool) {
	t.mu.Lock()
	adopted := t.adopted
	t.adopted = nil
	t.mu.Unlock()
	for id, ins := range adopted {
		for in := range ins {
			if !claimed[id+"/"+in] {
				t.Log.Warn("unrecorded tunnel stopped", "tunnel", id, "instance", in)
				tunnel.RemoveInstance(ctx, t.control(id), in)
			}
		}
	}
	t.mu.Lock()
	var empty []*tunnelHost
	for id, h := range t.hosts {
		if h.pods == 0 {
			h.closed = true
			delete(t.hosts, id)
			empty = append(empty, h)
		}
	}
	t.mu.Unlock()
	for _, h := range empty {
		t.stopHost(h)
	}
}

// instanceSet is the IDs of list.
func instanceSet(list []tunnel.InstanceInfo) map[string]bool {
	out := make(map[string]bool, len(list))
	for _, in := range list {
		out[in.ID] = true
	}
	return out
}
