package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

// DefaultPodsPerProcess is how many pods' Nebula instances share one tunnel
// process. One process costs about 9 MiB of its own (most of it tables a
// Nebula dependency fills at start); an instance in a shared one well under
// one (docs/BENCHMARKS.md). A process that crashes takes its pods' tunnels
// with it until the agent restores them, so the number bounds that too.
const DefaultPodsPerProcess = 16

// tunnelHost is one sealmesh-tunnel process and the pods placed in it.
type tunnelHost struct {
	id   string
	proc *tunnel.Process
	// pods counts the pods placed here, attached or being attached; the
	// process stops when it drops to zero.
	pods   int
	closed bool
}

// hostRecord is what the agent keeps on disk of a tunnel process
// (StateDir/tunnels/<id>.json), so a restarted agent adopts it.
type hostRecord struct {
	PID      int    `json:"pid"`
	PIDStart uint64 `json:"pidStart"`
}

func (a *Agent) tunnelsDir() string { return filepath.Join(a.cfg.StateDir, "tunnels") }

func (a *Agent) hostControl(id string) string { return filepath.Join(a.tunnelsDir(), id+".sock") }

// place reserves room for one pod in a tunnel process, starting a new one
// when all are full.
func (a *Agent) place() (*tunnelHost, error) {
	a.hostsMu.Lock()
	defer a.hostsMu.Unlock()
	var best *tunnelHost
	for _, h := range a.hosts {
		if !h.closed && h.proc.Alive() && h.pods < a.cfg.PodsPerProcess && (best == nil || h.pods > best.pods) {
			best = h // fill the fullest first: fewer processes
		}
	}
	if best == nil {
		h, err := a.startHost()
		if err != nil {
			return nil, err
		}
		a.hosts[h.id] = h
		best = h
	}
	best.pods++
	return best, nil
}

// unplace gives a pod's room back; an emptied process is stopped.
func (a *Agent) unplace(h *tunnelHost) {
	a.hostsMu.Lock()
	h.pods--
	empty := h.pods <= 0 && !h.closed
	if empty {
		h.closed = true
		delete(a.hosts, h.id)
	}
	a.hostsMu.Unlock()
	if empty {
		a.stopHost(h)
	}
}

func (a *Agent) startHost() (*tunnelHost, error) {
	b := make([]byte, 4)
	rand.Read(b)
	id := "t" + hex.EncodeToString(b)
	if err := os.MkdirAll(a.tunnelsDir(), 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(a.tunnelsDir(), id+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	// The child holds its own descriptor for its stderr.
	defer logFile.Close()
	args := append(slices.Clone(a.cfg.TunnelCommand[1:]), "--control", a.hostControl(id))
	proc, err := tunnel.Start(a.cfg.TunnelCommand[0], args, "", nil, logFile, a.cfg.StartTimeout)
	if err != nil {
		return nil, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	rec, _ := json.Marshal(hostRecord{PID: proc.Pid(), PIDStart: proc.StartTime()})
	if err := atomicfile.Write(a.tunnelsDir(), id+".json", rec); err != nil {
		proc.Stop(5 * time.Second)
		return nil, err
	}
	a.cfg.Log.Info("tunnel process started", "tunnel", id, "pid", proc.Pid())
	return &tunnelHost{id: id, proc: proc}, nil
}

func (a *Agent) stopHost(h *tunnelHost) {
	if err := h.proc.Stop(10 * time.Second); err != nil {
		a.cfg.Log.Warn("stop tunnel process", "tunnel", h.id, "err", err)
	}
	for _, ext := range []string{".json", ".sock"} {
		if err := os.Remove(filepath.Join(a.tunnelsDir(), h.id+ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			a.cfg.Log.Warn("forget tunnel process", "tunnel", h.id, "err", err)
		}
	}
	a.cfg.Log.Info("tunnel process stopped", "tunnel", h.id)
}

// adoptHosts takes up the tunnel processes a previous agent started, with
// what each runs; records of processes that are gone are dropped.
func (a *Agent) adoptHosts(ctx context.Context) map[string]map[string]bool {
	running := map[string]map[string]bool{}
	entries, err := os.ReadDir(a.tunnelsDir())
	if err != nil {
		return running
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.tunnelsDir(), e.Name()))
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
			list, err = tunnel.Instances(lctx, a.hostControl(id))
			cancel()
			if err != nil {
				proc.Stop(5 * time.Second) // running but not answering: of no use
			}
		}
		if err != nil {
			a.cfg.Log.Warn("tunnel process gone", "tunnel", id, "err", err)
			os.Remove(filepath.Join(a.tunnelsDir(), e.Name()))
			os.Remove(a.hostControl(id))
			continue
		}
		a.hosts[id] = &tunnelHost{id: id, proc: proc}
		running[id] = map[string]bool{}
		for _, in := range list {
			running[id][in.ID] = true
		}
		a.cfg.Log.Info("tunnel process re-adopted", "tunnel", id, "pid", rec.PID, "instances", len(list))
	}
	return running
}

// settleHosts, after Restore, stops instances no pod record claims (an agent
// that died between starting one and recording it) and processes left empty.
func (a *Agent) settleHosts(ctx context.Context, running map[string]map[string]bool) {
	a.mu.Lock()
	claimed := map[string]bool{}
	for _, p := range a.pods {
		claimed[p.host.id+"/"+p.instance] = true
	}
	a.mu.Unlock()
	for id, ins := range running {
		for in := range ins {
			if !claimed[id+"/"+in] {
				a.cfg.Log.Warn("unrecorded tunnel stopped", "tunnel", id, "instance", in)
				tunnel.RemoveInstance(ctx, a.hostControl(id), in)
			}
		}
	}
	a.hostsMu.Lock()
	var empty []*tunnelHost
	for id, h := range a.hosts {
		if h.pods == 0 {
			h.closed = true
			delete(a.hosts, id)
			empty = append(empty, h)
		}
	}
	a.hostsMu.Unlock()
	for _, h := range empty {
		a.stopHost(h)
	}
}
