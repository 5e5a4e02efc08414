package etcdstore

import (
	"fmt"
	"slices"
	"testing"

	"github.com/sealmesh/sealmesh/ca/store"
)

// A transaction carries the queued swaps in order, never one key twice (etcd
// refuses that) and never more than maxBatchOps puts; what is left waits for
// the next.
func TestTakeBatch(t *testing.T) {
	swap := func(keys ...string) *pendingSwap {
		p := &pendingSwap{}
		for _, k := range keys {
			p.recs = append(p.recs, store.Record{Key: k})
		}
		return p
	}
	many := make([]*pendingSwap, maxBatchOps)
	for i := range many {
		many[i] = swap(fmt.Sprintf("lease-%d", i), fmt.Sprintf("holder-%d", i))
	}
	for _, tc := range []struct {
		name  string
		queue []*pendingSwap
		batch int // how many of the queue, from its start, go now
	}{
		{"empty", nil, 0},
		{"one", []*pendingSwap{swap("lease-a")}, 1},
		{"distinct", []*pendingSwap{swap("lease-a", "holder-a"), swap("lease-b", "holder-b"), swap("lease-c")}, 3},
		{"full", many, maxBatchOps / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			batch, rest := takeBatch(tc.queue)
			if !slices.Equal(batch, tc.queue[:tc.batch]) || !slices.Equal(rest, tc.queue[tc.batch:]) {
				t.Fatalf("batch %d, rest %d; want %d and %d in order", len(batch), len(rest), tc.batch, len(tc.queue)-tc.batch)
			}
		})
	}
	// The same key twice: the later swap waits, and the ones after it
	// still go.
	a, a2, b, ptr := swap("lease-a"), swap("lease-a"), swap("lease-b", "holder-x"), swap("lease-c", "holder-x")
	batch, rest := takeBatch([]*pendingSwap{a, a2, b, ptr})
	if !slices.Equal(batch, []*pendingSwap{a, b}) || !slices.Equal(rest, []*pendingSwap{a2, ptr}) {
		t.Fatalf("with repeated keys: batch %v, rest %v", batch, rest)
	}
}
