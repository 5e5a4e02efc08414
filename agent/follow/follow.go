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
	"github.com/sealmesh/sealmesh/internal/retry"
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

	once  sync.Once
	fails *retry.Failures

	mu       sync.Mutex
	head     string
	answered time.Time
}

func (f *Follower) every() time.Duration {
	if f.Every <= 0 {
		return DefaultEvery
	}
	return f.Every
}

// failures paces and logs the reads that fail: backing off from Every to a
// minute while the coordinators do not answer, one warning per outage.
func (f *Follower) failures() *retry.Failures {
	f.once.Do(func() {
		b := retry.DefaultBackoff
		b.Duration = f.every()
		f.fails = retry.New(f.Log, "reading the manifest from the coordinators", b)
	})
	return f.fails
}

// Run follows the manifest until ctx ends.
func (f *Follower) Run(ctx context.Context) {
	for {
		wait := f.every()
		if err := f.Look(ctx); err != nil {
			wait = f.fails.Failed(err)
		}
		if !retry.Sleep(ctx, wait) {
			return
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
	fails := f.failures()
	if err != nil {
		return err // Run logs it (once per outage) and backs off
	}
	f.mu.Lock()
	was := f.head
	f.head, f.answered = info.Head, time.Now()
	f.mu.Unlock()
	fails.Succeeded("head", info.Head, "generation", info.Generation)
	if info.Head != was {
		f.Log.Info("manifest", "head", info.Head, "generation", info.Generation)
	}
	return nil
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
