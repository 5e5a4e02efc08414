package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sealmesh/sealmesh/internal/atomicfile"
)

// TestFileGroupCommit: swaps that arrive while the store's lock is taken
// are written together, with one directory sync, and each is checked
// against the store as the swaps before it in the group leave it: of two
// swaps from the same version one wins, a swap from a version an earlier
// one of the group wrote holds, and a swap whose extra record conflicts
// writes nothing.
func TestFileGroupCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f, err := OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	v0, err := f.Swap(ctx, "lease-x", "", []byte("x0"))
	if err != nil {
		t.Fatal(err)
	}
	// Another process holds the lock: every swap below queues.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var syncs int
	atomicfile.AfterStep = func(s string) {
		if s == "dir-synced" {
			mu.Lock()
			syncs++
			mu.Unlock()
		}
	}
	t.Cleanup(func() { atomicfile.AfterStep = nil })

	type result struct {
		v   Version
		err error
	}
	results := make([]result, 14)
	var wg sync.WaitGroup
	swap := func(i int, key string, old Version, value string, also ...Record) {
		wg.Go(func() {
			v, err := f.Swap(ctx, key, old, []byte(value), also...)
			results[i] = result{v, err}
		})
	}
	for i := range 10 {
		swap(i, fmt.Sprintf("lease-%d", i), "", fmt.Sprint("v", i), Record{Key: fmt.Sprintf("holder-%d", i), Value: []byte("p")})
	}
	swap(10, "lease-x", v0, "x1a") // one of these two wins
	swap(11, "lease-x", v0, "x1b")
	swap(12, "lease-y", "", "y0", Record{Key: "lease-x", Old: "bogus", Value: []byte("never")})
	waitQueued(t, f, 13)
	// From what 10 or 11 will write, whichever wins: it holds after them.
	v1a, v1b := version([]byte("x1a")), version([]byte("x1b"))
	swap(13, "holder-x", "", "h", Record{Key: "lease-x", Old: v1a, Value: []byte("x2")})
	waitQueued(t, f, 14)
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	wg.Wait()

	if syncs != 1 {
		t.Errorf("%d directory syncs for one group, want 1", syncs)
	}
	for i := range 10 {
		if results[i].err != nil {
			t.Errorf("swap %d: %v", i, results[i].err)
		}
	}
	won := 10
	if results[10].err != nil {
		won = 11
	}
	if !errors.Is(results[21-won].err, ErrConflict) || results[won].err != nil {
		t.Fatalf("two swaps from one version: %v and %v, want one ErrConflict", results[10].err, results[11].err)
	}
	if !errors.Is(results[12].err, ErrConflict) {
		t.Errorf("a swap whose extra record conflicts: %v, want ErrConflict", results[12].err)
	}
	if _, err := f.Get(ctx, "lease-y"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the conflicting swap wrote lease-y: %v", err)
	}
	x, err := f.Get(ctx, "lease-x")
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case won == 10 && results[13].err == nil && string(x) == "x2":
	case won == 11 && errors.Is(results[13].err, ErrConflict) && string(x) == "x1b":
	default:
		t.Errorf("winner %d (%s, %s), then a swap from x1a: %v; lease-x is %q", won, v1a[:8], v1b[:8], results[13].err, x)
	}
	for i := range 10 {
		if b, err := f.Get(ctx, fmt.Sprintf("holder-%d", i)); err != nil || string(b) != "p" {
			t.Errorf("holder-%d: %q %v", i, b, err)
		}
	}
}

func waitQueued(t *testing.T, f *File, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		f.mu.Lock()
		got := len(f.queue)
		f.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("fewer than %d swaps queued", n)
}
