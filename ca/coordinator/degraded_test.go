package coordinator_test

import (
	"context"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/store"
)

// unreadable is a store whose reads fail with an I/O error while down is set,
// as a coordinator's did at its fd limit.
type unreadable struct {
	store.Store
	down atomic.Bool
	// chainOnly leaves Latest readable: the chain's objects fail.
	chainOnly bool
}

func (u *unreadable) Get(ctx context.Context, key string) ([]byte, error) {
	if u.down.Load() {
		return nil, syscall.EMFILE
	}
	return u.Store.Get(ctx, key)
}

func (u *unreadable) Latest(ctx context.Context) ([]byte, store.Version, error) {
	if u.down.Load() && !u.chainOnly {
		return nil, "", syscall.EMFILE
	}
	return u.Store.Latest(ctx)
}

// Finding 3 of the attack review: at the fd limit the periodic recheck got
// "too many open files" from the store and put the coordinator into failed,
// the state meant for a tampered store. A store that does not answer only
// degrades it: it goes on serving the state it verified, and is ready again
// once the store answers.
func TestStoreIOErrorDegrades(t *testing.T) {
	ctx := context.Background()
	for _, broken := range []string{"latest", "transition"} {
		t.Run(broken, func(t *testing.T) {
			var u *unreadable
			h := newHarnessWith(t, newDirs(t), nil, func(c *coordinator.Config) {
				u = &unreadable{Store: c.Store, chainOnly: broken == "transition"}
				c.Store = u
			})
			h.create(t, testManifest(webDev.RootFingerprint()))
			u.down.Store(true)
			h.c.Recheck(ctx)
			st := h.c.Status()
			if st.State != api.StateDegraded || !strings.Contains(st.Message, "too many open files") {
				t.Fatalf("after an I/O error: %s (%s), want %s naming the error", st.State, st.Message, api.StateDegraded)
			}
			if !h.c.Ready() {
				t.Fatal("a degraded coordinator is not ready")
			}
			u.down.Store(false)
			if _, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Namespace: "ns", Name: "pod"}); err != nil {
				t.Fatalf("enrolment while degraded: %v", err)
			}
			h.c.Recheck(ctx)
			if st := h.c.Status(); st.State != api.StateReady {
				t.Fatalf("after the store answers again: %s (%s)", st.State, st.Message)
			}
		})
	}
}
