// Package follow keeps a client's view of the mesh's manifest current. One
// follower serves each process, whatever its mode (node agent, pod agent,
// lighthouse): every answer refreshes the client's trust in coordinators (a
// coordinator role added or removed takes effect at once) and tells the
// renewal loops which manifest is current, so new rules, lighthouses and
// revocations reach running tunnels.
package follow

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/sealmesh/sealmesh/api"
)

// DefaultEvery is how often a follower asks for the manifest.
const DefaultEvery = 5 * time.Second

// Trust follows the coordinator roles of the manifest a coordinator it
// accepted sent (attested.Trust).
type Trust interface {
	Follow(*api.ManifestInfo) error
}

// Follower asks the coordinators for the manifest every Every.
type Follower struct {
	Client *api.Client
	// Trust is refreshed with every manifest read; nil (plain HTTP, for
	// development) follows nothing.
	Trust Trust
	Every time.Duration
	Log   *slog.Logger

	mu       sync.Mutex
	head     string
	answered time.Time
	failing  bool
}

// Run follows the manifest until ctx ends.
func (f *Follower) Run(ctx context.Context) {
	every := f.Every
	if every <= 0 {
		every = DefaultEvery
	}
	for {
		f.Look(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// Look reads the manifest once and applies it.
func (f *Follower) Look(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	info, err := f.Client.Manifest(lctx)
	cancel()
	if err == nil && f.Trust != nil {
		err = f.Trust.Follow(info)
	}
	f.mu.Lock()
	was, failing := f.head, f.failing
	f.failing = err != nil
	if err == nil {
		f.head, f.answered = info.Head, time.Now()
	}
	f.mu.Unlock()
	switch {
	case err != nil && !failing:
		// Once per outage, not every few seconds: the next success says
		// when it ended.
		f.Log.Warn("manifest: cannot read it from the coordinators; retrying", "err", err)
	case err != nil:
		f.Log.Debug("manifest", "err", err)
	case failing:
		f.Log.Info("manifest: the coordinators answer again", "head", info.Head, "generation", info.Generation)
	case info.Head != was:
		f.Log.Info("manifest", "head", info.Head, "generation", info.Generation)
	}
	return err
}

// Head is the head of the manifest last read ("" before the first).
func (f *Follower) Head() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.head
}

// Answered is when a coordinator last answered.
func (f *Follower) Answered() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.answered
}
