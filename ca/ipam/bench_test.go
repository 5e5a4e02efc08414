package ipam_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/ipam"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

// BenchmarkAllocate is one address chosen and its lease recorded (Issue)
// in a /16 that already holds n leases, over the file store on tmpfs: the
// allocator's own cost, not a disk's or a network's.
func BenchmarkAllocate(b *testing.B) {
	for _, n := range []int{0, 10000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			st, m, a := benchAllocator(b)
			ctx, now := context.Background(), time.Now()
			alloc := func(a *ipam.Allocator, i int) {
				if _, err := issue(a, fmt.Sprintf("key%d", i), now); err != nil {
					b.Fatal(err)
				}
			}
			for i := range n {
				alloc(a, i)
			}
			// A restarted coordinator: the leases are loaded, the search
			// starts at the network's beginning.
			a, err := ipam.NewAllocator(ctx, st, m, leaseKey)
			if err != nil {
				b.Fatal(err)
			}
			i := n
			for b.Loop() {
				alloc(a, i)
				i++
			}
		})
	}
}

// BenchmarkBlocklist is what every enrolment's answer reads for its
// blocklist (HeldBy the manifest's revoked holders, and Superseded) with n
// leases held: it must not grow with n (a pass over every lease did, and
// was most of a coordinator's CPU per enrolment at tens of thousands).
func BenchmarkBlocklist(b *testing.B) {
	for _, n := range []int{1000, 30000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			_, _, a := benchAllocator(b)
			now := time.Now()
			for i := range n {
				if _, err := issue(a, fmt.Sprintf("key%d", i), now); err != nil {
					b.Fatal(err)
				}
			}
			revoked := []string{"key1", "key7", "key42"}
			for b.Loop() {
				if got := len(a.HeldBy(revoked, now)) + len(a.Superseded(now)); got != 3 {
					b.Fatalf("%d certificates blocked, want 3", got)
				}
			}
		})
	}
}

// benchAllocator is an allocator for a /16 over a file store on tmpfs.
func benchAllocator(b *testing.B) (store.Store, *manifest.Manifest, *ipam.Allocator) {
	st := tmpfsStore(b)
	m, err := manifest.Parse([]byte(strings.Replace(raw, "10.42.0.0/26", "10.42.0.0/16", 1)))
	if err != nil {
		b.Fatal(err)
	}
	a, err := ipam.NewAllocator(context.Background(), st, m, leaseKey)
	if err != nil {
		b.Fatal(err)
	}
	return st, m, a
}

// tmpfsStore is a file store on tmpfs where there is one: the allocator's
// own cost is measured, not a disk's.
func tmpfsStore(b *testing.B) store.Store {
	dir := b.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "sealmesh-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	st, err := store.OpenFile(dir)
	if err != nil {
		b.Fatal(err)
	}
	return st
}
