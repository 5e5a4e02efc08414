package ipam_test

import (
	"context"
	"fmt"
	"net/netip"
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
			m, err := manifest.Parse([]byte(strings.Replace(raw, "10.42.0.0/26", "10.42.0.0/16", 1)))
			if err != nil {
				b.Fatal(err)
			}
			a, err := ipam.NewAllocator(context.Background(), st, m, leaseKey)
			if err != nil {
				b.Fatal(err)
			}
			ctx, now := context.Background(), time.Now()
			alloc := func(i int) {
				holder := fmt.Sprintf("key%d", i)
				if _, err := a.Issue(ctx, netip.Addr{}, holder, "web", now, func(ip netip.Addr) (ipam.Lease, error) {
					return lease(ip, holder, now), nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			for i := range n {
				alloc(i)
			}
			// A restarted coordinator: the leases are loaded, the search
			// starts at the network's beginning.
			if a, err = ipam.NewAllocator(context.Background(), st, m, leaseKey); err != nil {
				b.Fatal(err)
			}
			i := n
			for b.Loop() {
				alloc(i)
				i++
			}
		})
	}
}
