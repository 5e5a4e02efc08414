package node

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

// Shutdown lets go of the pods without stopping them: their tunnels keep
// running, and the next agent adopts them (Restore), so an agent upgrade or
// crash does not cut pods off.
func (a *Agent) Shutdown() {}

// record is what the agent keeps on disk of one attachment (StateDir/pods,
// mode 0600), so that a restarted agent finds its pods.
type record struct {
	Request      cniapi.Request   `json:"request"`
	Result       cniapi.AddResult `json:"result"`
	Fingerprint  string           `json:"fingerprint"`
	ReleaseToken string           `json:"releaseToken"`
	IP           string           `json:"ip"`
	// Tunnel is the tunnel process running the pod's Nebula instance.
	Tunnel      string    `json:"tunnel"`
	Certificate string    `json:"certificate"`
	RenewAt     time.Time `json:"renewAt"`
	Head        string    `json:"head"`
}

func (a *Agent) podsDir() string { return filepath.Join(a.cfg.StateDir, "pods") }

func recordName(r *cniapi.Request) string { return r.ContainerID + "-" + r.IfName + ".json" }

// podLog is where the pod's Nebula logs.
func (a *Agent) podLog(r *cniapi.Request) (string, error) {
	if err := os.MkdirAll(a.podsDir(), 0o700); err != nil {
		return "", err
	}
	return filepath.Join(a.podsDir(), r.ContainerID+"-"+r.IfName+".log"), nil
}

func (a *Agent) save(p *pod) error {
	a.mu.Lock()
	b, err := json.Marshal(record{Request: p.req, Result: p.result, Fingerprint: p.fingerprint, ReleaseToken: p.releaseToken,
		IP: p.ip, Tunnel: p.host, Certificate: p.certificate, RenewAt: p.renewAt, Head: p.head})
	a.mu.Unlock()
	if err != nil {
		return err
	}
	// Unsynced: the record is for an agent that restarts on this node
	// while its pods run; a node that crashes takes the pods with it, and
	// Restore drops a record the crash left empty.
	return atomicfile.WriteUnsynced(a.podsDir(), recordName(&p.req), b)
}

func (a *Agent) forget(r *cniapi.Request) {
	if err := os.Remove(filepath.Join(a.podsDir(), recordName(r))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.cfg.Log.Warn("forget pod", "container", r.ContainerID, "err", err)
	}
}

// Restore takes up the pods a previous agent attached: a tunnel still
// running is adopted; one that stopped while its pod's network namespace
// still exists is restored (enrolled again, started again); the rest are
// forgotten and their addresses released. Call it before Serve.
func (a *Agent) Restore(ctx context.Context) {
	running := a.cfg.Tunnels.Adopt(ctx)
	claimed := map[string]bool{}
	defer func() { a.cfg.Tunnels.Settle(ctx, claimed) }()
	entries, err := os.ReadDir(a.podsDir())
	if err != nil {
		return // no pods yet
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.podsDir(), e.Name()))
		if err == nil && len(b) == 0 {
			// Written unsynced (save) before the node crashed: its pod
			// and tunnel went with the node.
			a.cfg.Log.Warn("empty pod record from before a crash of the node; removed", "file", e.Name())
			os.Remove(filepath.Join(a.podsDir(), e.Name()))
			continue
		}
		var rec record
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err == nil {
			err = rec.Request.Validate()
		}
		if err != nil {
			a.cfg.Log.Error("unreadable pod record; left in place", "file", e.Name(), "err", err)
			continue
		}
		r := &rec.Request
		if id := instanceID(r); running[rec.Tunnel][id] {
			a.cfg.Tunnels.Keep(rec.Tunnel)
			claimed[rec.Tunnel+"/"+id] = true
			a.mu.Lock()
			a.pods[key(r)] = &pod{req: *r, result: rec.Result, host: rec.Tunnel, instance: id, fingerprint: rec.Fingerprint, releaseToken: rec.ReleaseToken, ip: rec.IP,
				certificate: rec.Certificate, renewAt: rec.RenewAt, head: rec.Head}
			a.mu.Unlock()
			a.cfg.Log.Info("pod re-adopted", "container", r.ContainerID, "ip", rec.Result.Address, "tunnel", rec.Tunnel)
			continue
		}
		a.reattach(ctx, r, rec.Fingerprint, rec.ReleaseToken, rec.IP, rec.Result.Address)
	}
}

// reattach handles a pod whose tunnel is gone: its address is given back, and
// the pod is attached anew (enrolled again) if its netns still exists.
func (a *Agent) reattach(ctx context.Context, r *cniapi.Request, fingerprint, releaseToken, ip, was string) {
	a.forget(r)
	a.release(fingerprint, releaseToken, ip)
	if !a.cfg.Netns.Exists(r.Netns) {
		a.cfg.Log.Info("pod gone; forgotten", "container", r.ContainerID, "ip", was)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := a.Add(rctx, r)
	if err != nil {
		a.cfg.Log.Error("pod could not be restored; its runtime will see CHECK fail", "container", r.ContainerID, "err", err)
		return
	}
	if res.Skipped != "" {
		a.cfg.Log.Warn("pod not restored: "+res.Skipped, "container", r.ContainerID, "was", was)
		return
	}
	a.cfg.Log.Warn("pod restored: its tunnel had stopped; enrolled again", "container", r.ContainerID, "was", was, "ip", res.Address)
}
