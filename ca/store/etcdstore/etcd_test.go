package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/store/etcdstore"
	"github.com/sealmesh/sealmesh/ca/store/storetest"
	"github.com/sealmesh/sealmesh/test/tools"
)

func TestEtcdConformance(t *testing.T) {
	endpoint := tools.StartEtcd(t)
	n := 0
	storetest.Conformance(t, func(t *testing.T) store.Store {
		n++ // a fresh prefix per subtest: an empty store on the same etcd
		s, err := etcdstore.Open([]string{endpoint}, fmt.Sprintf("/sealmesh-test/%d", n))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Swaps made at the same time share transactions (group commit): far fewer
// Txn requests reach etcd than swaps were made, every swap still gets its own
// answer and its own records, and one that loses (its key exists already)
// costs the others nothing: they are made in the same transaction.
func TestEtcdGroupCommit(t *testing.T) {
	endpoint := tools.StartEtcd(t)
	for _, tc := range []struct {
		name  string
		every int // every n-th swap loses (0: none)
	}{
		{"all made", 0},
		{"every fourth loses", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := etcdstore.Open([]string{endpoint}, "/sealmesh-test/group-"+strings.ReplaceAll(tc.name, " ", "-"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			ctx := context.Background()
			const n = 64
			loses := func(i int) bool { return tc.every > 0 && i%tc.every == 0 }
			for i := range n {
				if loses(i) {
					if _, err := s.Swap(ctx, fmt.Sprintf("lease-%d", i), "", []byte("taken")); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, err := s.Swap(ctx, "lease-warm", "", []byte("w")); err != nil { // the connection is made
				t.Fatal(err)
			}
			before, err := tools.EtcdOps(http.DefaultClient, endpoint, "Txn")
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			versions := make([]store.Version, n)
			errs := make([]error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					versions[i], errs[i] = s.Swap(ctx, fmt.Sprintf("lease-%d", i), "", []byte(fmt.Sprint(i)),
						store.Record{Key: fmt.Sprintf("holder-%d", i), Value: []byte(fmt.Sprint(i))})
				}()
			}
			wg.Wait()
			after, err := tools.EtcdOps(http.DefaultClient, endpoint, "Txn")
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if loses(i) {
					if !errors.Is(errs[i], store.ErrConflict) {
						t.Fatalf("swap %d over an existing record: %v, want ErrConflict", i, errs[i])
					}
					if got, _ := s.Get(ctx, fmt.Sprintf("lease-%d", i)); string(got) != "taken" {
						t.Fatalf("lease-%d = %q after a lost swap", i, got)
					}
					if _, err := s.Get(ctx, fmt.Sprintf("holder-%d", i)); !errors.Is(err, store.ErrNotFound) {
						t.Fatalf("a lost swap wrote holder-%d: %v", i, err)
					}
					continue
				}
				if errs[i] != nil {
					t.Fatalf("swap %d: %v", i, errs[i])
				}
				got, v, err := s.GetVersion(ctx, fmt.Sprintf("lease-%d", i))
				if err != nil || string(got) != fmt.Sprint(i) || v != versions[i] {
					t.Fatalf("lease-%d = %q at %s, %v; want %d at %s", i, got, v, err, i, versions[i])
				}
				if got, err := s.Get(ctx, fmt.Sprintf("holder-%d", i)); err != nil || string(got) != fmt.Sprint(i) {
					t.Fatalf("holder-%d = %q, %v", i, got, err)
				}
			}
			// Batches form while one is in flight: a handful of
			// transactions, not one per swap, and none sent again
			// because one of its swaps lost.
			if txns := after - before; txns > n/4 {
				t.Fatalf("%d concurrent swaps took %d transactions", n, txns)
			} else {
				t.Logf("%d concurrent swaps in %d transactions", n, txns)
			}
		})
	}
}

// A swap whose caller has gone before it was sent is never made: an
// enrolment that timed out leaves no lease behind.
func TestEtcdSwapOfAGoneCaller(t *testing.T) {
	s, err := etcdstore.Open([]string{tools.StartEtcd(t)}, "/sealmesh-test/gone")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Swap(gone, "lease-gone", "", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("swap with a cancelled context: %v, want context.Canceled", err)
	}
	// Swaps are sent in order: once a later one is made, the queue has
	// passed the first.
	if _, err := s.Swap(context.Background(), "lease-later", "", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "lease-gone"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the gone caller's record: %v, want ErrNotFound", err)
	}
}
