package coordinator_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/ipam"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

// benchDir puts the store on tmpfs when there is one: the benchmark measures
// verification and loading, not the disk's fsync.
func benchDir(b *testing.B) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "sealmesh-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	return b.TempDir()
}

// BenchmarkRestartToReady: a coordinator restarts over a store holding n
// transitions and n issued certificates; one op is New + Unlock (unseal,
// verify every transition and owner signature, load every lease).
func BenchmarkRestartToReady(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("transitions=%d/certificates=%d", n, n), func(b *testing.B) {
			devices(b)
			ctx := context.Background()
			d := dirs{store: benchDir(b), state: benchDir(b)}
			st, err := store.OpenFile(d.store)
			if err != nil {
				b.Fatal(err)
			}
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			c, err := coordinator.Open(context.Background(), coordinator.Config{Log: quiet, Store: st, StateDir: d.state})
			if err != nil {
				b.Fatal(err)
			}
			raw := testManifest(webDev.RootFingerprint())
			created, err := c.SetManifest(ctx, mustRequest(b, raw, ""))
			if err != nil {
				b.Fatal(err)
			}
			seedRaw, _ := seal.OpenWith(shareKey, seal.SeedShareInfo, created.SeedShares[0].Share)
			seed, _ := keys.SeedFrom(seedRaw)
			// Grow the history and the leases through the real code paths.
			cur, err := history.Load(ctx, st, seed, history.Floor{})
			if err != nil {
				b.Fatal(err)
			}
			for i := 2; i <= n; i++ {
				m, err := manifest.Parse([]byte(strings.Replace(raw, `"1h"`, fmt.Sprintf(`"%dm"`, 60+i%600), 1)))
				if err != nil {
					b.Fatal(err)
				}
				if cur, err = history.Append(ctx, st, seed, cur, m, history.Sign(cur.Head, m, ownerKey), time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			big, _ := manifest.Parse([]byte(strings.Replace(raw, `"10.42.0.0/24"`, `"10.42.0.0/16"`, 1)))
			alloc, err := ipam.NewAllocator(context.Background(), st, big, seed.LeaseKey())
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				if _, err := alloc.Issue(context.Background(), netip.Addr{}, "", "web", time.Now(), func(ip netip.Addr) (ipam.Lease, error) {
					return ipam.Lease{IP: ip, Name: fmt.Sprintf("web-%d", i), Role: "web", Groups: []string{"web", "pods"},
						Fingerprint: fmt.Sprintf("%064x", i), NotAfter: time.Now().Add(time.Hour), Workload: "ns/pod", ReleaseHash: fmt.Sprintf("%064x", i)}, nil
				}); err != nil {
					b.Fatal(err)
				}
			}

			var heap uint64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				c2, err := coordinator.Open(context.Background(), coordinator.Config{Log: quiet, Store: st, StateDir: d.state})
				if err != nil {
					b.Fatal(err)
				}
				s, err := c2.Unlock(ctx, &api.UnlockRequest{UnlockKey: created.UnlockKey})
				if err != nil || s.State != api.StateReady || s.Generation != uint64(n) || s.HostCount != n {
					b.Fatalf("restart: %v, state %s generation %d hosts %d", err, s.State, s.Generation, s.HostCount)
				}
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				heap = after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc)
				runtime.KeepAlive(c2)
			}
			b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
		})
	}
}

func mustRequest(b *testing.B, raw, parent string) *api.ManifestRequest {
	req, err := ownerRequest(raw, parent)
	if err != nil {
		b.Fatal(err)
	}
	return req
}
