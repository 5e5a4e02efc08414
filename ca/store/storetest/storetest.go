// Package storetest is the conformance suite every store backend passes.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/store"
)

// Conformance runs the behaviour every backend must have. Each backend's tests
// call it with a fresh, empty store per call of open.
func Conformance(t *testing.T, open func(t *testing.T) store.Store) {
	ctx := context.Background()
	t.Run("get put", func(t *testing.T) {
		s := open(t)
		if _, err := s.Get(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get of a missing key: %v, want ErrNotFound", err)
		}
		for _, v := range [][]byte{[]byte("one"), []byte("two"), {}} {
			if err := s.Put(ctx, "a", v); err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(ctx, "a")
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("Get = %q, %v; want %q", got, err, v)
			}
		}
	})
	t.Run("list delete", func(t *testing.T) {
		s := open(t)
		for k, v := range map[string]string{"lease-1": "a", "lease-2": "b", "other": "c"} {
			if err := s.Put(ctx, k, []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.SwapLatest(ctx, "", []byte("l")); err != nil {
			t.Fatal(err)
		}
		got, err := s.List(ctx, "lease-")
		if err != nil || len(got) != 2 || string(got["lease-1"]) != "a" || string(got["lease-2"]) != "b" {
			t.Fatalf("List(lease-) = %q, %v", got, err)
		}
		if all, _ := s.List(ctx, ""); len(all) != 3 {
			t.Fatalf("List() = %q: want the three keys and not the latest pointer", all)
		}
		if err := s.Delete(ctx, "lease-1"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "lease-1"); err != nil {
			t.Fatalf("deleting a missing key: %v", err)
		}
		if _, err := s.Get(ctx, "lease-1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get after Delete: %v", err)
		}
		if got, _ := s.List(ctx, "lease-"); len(got) != 1 {
			t.Fatalf("List after Delete = %q", got)
		}
	})
	t.Run("swap latest", func(t *testing.T) {
		s := open(t)
		if _, _, err := s.Latest(ctx); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Latest of an empty store: %v, want ErrNotFound", err)
		}
		if _, err := s.SwapLatest(ctx, "bogus", []byte("x")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("swap from a version that never was: %v, want ErrConflict", err)
		}
		v1, err := s.SwapLatest(ctx, "", []byte("first"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.SwapLatest(ctx, "", []byte("again")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second create: %v, want ErrConflict", err)
		}
		v2, err := s.SwapLatest(ctx, v1, []byte("second"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.SwapLatest(ctx, v1, []byte("stale")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("swap from a stale version: %v, want ErrConflict", err)
		}
		got, v, err := s.Latest(ctx)
		if err != nil || string(got) != "second" || v != v2 {
			t.Fatalf("Latest = %q %q %v; want second %q", got, v, err, v2)
		}
	})
	t.Run("concurrent swaps: exactly one wins each round", func(t *testing.T) {
		s := open(t)
		v, err := s.SwapLatest(ctx, "", []byte("0"))
		if err != nil {
			t.Fatal(err)
		}
		for round := 1; round <= 5; round++ {
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			var next store.Version
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					nv, err := s.SwapLatest(ctx, v, []byte(fmt.Sprintf("%d-%d", round, i)))
					if err == nil {
						mu.Lock()
						wins++
						next = nv
						mu.Unlock()
					} else if !errors.Is(err, store.ErrConflict) {
						t.Error(err)
					}
				}(i)
			}
			wg.Wait()
			if wins != 1 {
				t.Fatalf("round %d: %d swaps won, want 1", round, wins)
			}
			v = next
		}
	})
	t.Run("swap a record", func(t *testing.T) {
		s := open(t)
		if _, _, err := s.GetVersion(ctx, "lease-a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetVersion of a missing key: %v, want ErrNotFound", err)
		}
		if _, err := s.Swap(ctx, "lease-a", "bogus", []byte("x")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("swap of a missing key from a version: %v, want ErrConflict", err)
		}
		v1, err := s.Swap(ctx, "lease-a", "", []byte("first"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Swap(ctx, "lease-a", "", []byte("again")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second create: %v, want ErrConflict", err)
		}
		got, v, err := s.GetVersion(ctx, "lease-a")
		if err != nil || string(got) != "first" || v != v1 {
			t.Fatalf("GetVersion = %q %q %v; want first %q", got, v, err, v1)
		}
		v2, err := s.Swap(ctx, "lease-a", v1, []byte("second"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Swap(ctx, "lease-a", v1, []byte("stale")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("swap from a stale version: %v, want ErrConflict", err)
		}
		if got, _ := s.Get(ctx, "lease-a"); string(got) != "second" {
			t.Fatalf("Get = %q after swaps", got)
		}
		// Other keys and the latest pointer are separate.
		if _, err := s.Swap(ctx, "lease-b", "", []byte("b")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SwapLatest(ctx, "", []byte("l")); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "lease-a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Swap(ctx, "lease-a", v2, []byte("after delete")); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("swap of a deleted record from its old version: %v, want ErrConflict", err)
		}
		if _, err := s.Swap(ctx, "lease-a", "", []byte("new")); err != nil {
			t.Fatalf("create after delete: %v", err)
		}
		// A swap's other records are set when it succeeds, never when it
		// fails, and each is compared as key is: all or nothing.
		hint := store.Record{Key: "holder-x", Value: []byte("10.0.0.1")}
		if _, err := s.Swap(ctx, "lease-a", "", []byte("lost"), hint); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("create over an existing record: %v, want ErrConflict", err)
		}
		if _, err := s.Get(ctx, "holder-x"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a failed swap's other record: %v, want ErrNotFound", err)
		}
		if _, err := s.Swap(ctx, "lease-c", "", []byte("c"), hint); err != nil {
			t.Fatal(err)
		}
		got, hv, err := s.GetVersion(ctx, "holder-x")
		if err != nil || string(got) != "10.0.0.1" {
			t.Fatalf("a swap's other record = %q, %v", got, err)
		}
		if _, err := s.Swap(ctx, "lease-e", "", []byte("e"), hint); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a swap whose other record exists already: %v, want ErrConflict", err)
		}
		if _, err := s.Get(ctx, "lease-e"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a swap lost on its other record wrote its key: %v, want ErrNotFound", err)
		}
		moved := store.Record{Key: "holder-x", Old: hv, Value: []byte("10.0.0.2")}
		if _, err := s.Swap(ctx, "lease-e", "", []byte("e"), moved); err != nil {
			t.Fatalf("a swap with its other record at its version: %v", err)
		}
		if got, _ := s.Get(ctx, "holder-x"); string(got) != "10.0.0.2" {
			t.Fatalf("the other record = %q after its swap", got)
		}
		if _, err := s.Swap(ctx, "lease-f", "", []byte("f"), moved); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a swap with its other record at a stale version: %v, want ErrConflict", err)
		}
		if _, err := s.Swap(ctx, "lease-d", "", []byte("d"), store.Record{Key: "latest", Value: []byte("x")}); err == nil {
			t.Fatal("a swap set the latest pointer as another record")
		}
	})
	t.Run("concurrent swaps: a lost one costs the others nothing", func(t *testing.T) {
		s := open(t)
		if _, err := s.Swap(ctx, "lease-taken", "", []byte("x")); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 32)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("lease-%d", i)
				if i%4 == 0 {
					key = "lease-taken" // loses: it exists
				}
				_, errs[i] = s.Swap(ctx, key, "", []byte(fmt.Sprint(i)), store.Record{Key: fmt.Sprintf("holder-%d", i), Value: []byte("p")})
			}()
		}
		wg.Wait()
		for i, err := range errs {
			_, herr := s.Get(ctx, fmt.Sprintf("holder-%d", i))
			switch {
			case i%4 == 0 && (!errors.Is(err, store.ErrConflict) || !errors.Is(herr, store.ErrNotFound)):
				t.Errorf("swap %d over an existing record: %v (its other record: %v), want ErrConflict and none", i, err, herr)
			case i%4 != 0 && (err != nil || herr != nil):
				t.Errorf("swap %d: %v (its other record: %v)", i, err, herr)
			}
		}
	})
	t.Run("concurrent record claims: exactly one wins", func(t *testing.T) {
		s := open(t)
		for round := 0; round < 5; round++ {
			key := fmt.Sprintf("lease-%d", round)
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					_, err := s.Swap(ctx, key, "", []byte(fmt.Sprint(i)))
					if err == nil {
						mu.Lock()
						wins++
						mu.Unlock()
					} else if !errors.Is(err, store.ErrConflict) {
						t.Error(err)
					}
				}(i)
			}
			wg.Wait()
			if wins != 1 {
				t.Fatalf("%s: %d claims won, want 1", key, wins)
			}
		}
	})
	t.Run("watch", func(t *testing.T) {
		s := open(t)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch := s.Watch(wctx)
		time.Sleep(100 * time.Millisecond) // let the watch start
		if _, err := s.SwapLatest(ctx, "", []byte("w")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("no notification within 10s of a change")
		}
	})
	t.Run("remove at a version", func(t *testing.T) {
		s := open(t)
		for k, v := range map[string]string{"lease-1": "a", "holder-1": "p"} {
			if err := s.Put(ctx, k, []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		_, stale, err := s.GetVersion(ctx, "lease-1")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "lease-1", []byte("b")); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(ctx, "lease-1", stale, "holder-1"); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Remove at a stale version: %v, want ErrConflict", err)
		}
		for _, k := range []string{"lease-1", "holder-1"} {
			if _, err := s.Get(ctx, k); err != nil {
				t.Fatalf("%s after a Remove that lost: %v", k, err)
			}
		}
		_, cur, err := s.GetVersion(ctx, "lease-1")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(ctx, "lease-1", cur, "holder-1", "holder-missing"); err != nil {
			t.Fatalf("Remove at the current version: %v", err)
		}
		for _, k := range []string{"lease-1", "holder-1"} {
			if _, err := s.Get(ctx, k); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("%s after Remove: %v, want ErrNotFound", k, err)
			}
		}
		if err := s.Remove(ctx, "lease-1", cur); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Remove of a key gone already: %v, want ErrConflict", err)
		}
		if err := s.Remove(ctx, "lease-1", ""); err == nil || errors.Is(err, store.ErrConflict) {
			t.Fatalf("Remove at no version: %v, want an error of the call", err)
		}
	})
	t.Run("follow", func(t *testing.T) { follow(t, open(t)) })
}

// follow checks store.Follow: a copy kept from its updates becomes what the
// store holds under the prefix, with the versions Swap needs; a Follower
// sends changes, not a new listing per change; the channel closes when the
// context ends.
func follow(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for k, v := range map[string]string{"lease-1": "a", "lease-2": "b", "other": "x"} {
		if err := s.Put(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	ch := store.Follow(ctx, s, "lease-", 20*time.Millisecond)
	_, watches := s.(store.Follower)
	view := map[string]store.Change{}
	resets := 0
	// await applies updates until the copy holds want (values by key).
	await := func(want map[string]string) {
		t.Helper()
		deadline := time.After(20 * time.Second) // a bound against hangs
		for {
			got := map[string]string{}
			for k, c := range view {
				got[k] = string(c.Value)
			}
			if fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
			select {
			case u, ok := <-ch:
				if !ok {
					t.Fatal("Follow closed its channel while the context lives")
				}
				if u.Reset {
					resets++
					view = map[string]store.Change{}
				}
				for _, c := range u.Changes {
					if c.Deleted {
						delete(view, c.Key)
					} else {
						view[c.Key] = c
					}
				}
			case <-deadline:
				t.Fatalf("following lease-: have %v, want %v", got, want)
			}
		}
	}
	await(map[string]string{"lease-1": "a", "lease-2": "b"})
	if _, err := s.Swap(ctx, "lease-3", "", []byte("c")); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		if err := s.Put(ctx, "lease-1", []byte(fmt.Sprintf("a%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, "lease-2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "other", []byte("y")); err != nil {
		t.Fatal(err)
	}
	await(map[string]string{"lease-1": fmt.Sprintf("a%d", n-1), "lease-3": "c"})
	if v := view["lease-3"].Version; v != "" || watches {
		if _, want, err := s.GetVersion(ctx, "lease-3"); err != nil || v != want {
			t.Fatalf("followed lease-3 at version %q; GetVersion: %q, %v", v, want, err)
		}
	}
	if watches && resets != 1 {
		t.Fatalf("a Follower listed %d times for %d changes; want one listing, then the changes", resets, n+3)
	}
	cancel()
	for range ch {
	}
}
