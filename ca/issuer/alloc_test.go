package issuer_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/issuer"
	"github.com/sealmesh/sealmesh/ca/manifest"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/test/tools"
)

// A manifest with a /26: 62 host addresses, one of them a lighthouse's.
const raw = `{
  "version": 1,
  "owners": [{"name": "alice", "key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}],
  "networks": ["10.42.0.0/26"],
  "roles": [{"name": "web", "groups": ["web"], "attestation": {"simulated": {"measurements": ["000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"], "rootFingerprint": "0000000000000000000000000000000000000000000000000000000000000000"}}}],
  "lighthouses": [{"name": "lh1", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242", "tokenSHA256": "0000000000000000000000000000000000000000000000000000000000000000"}]
}`

func stores(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"file": func(t *testing.T) store.Store {
			s, err := store.OpenFile(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"etcd": func(t *testing.T) store.Store {
			s, err := store.OpenEtcd([]string{tools.StartEtcd(t)}, "/alloc-test/")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func allocators(t *testing.T, st store.Store, n int) []*issuer.Allocator {
	m, err := manifest.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out []*issuer.Allocator
	for range n {
		a, err := issuer.NewAllocator(st, m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func lease(c issuer.Claim, holder string, now time.Time) issuer.Lease {
	return issuer.Lease{IP: c.IP, Name: "web-" + c.IP.String(), Role: "web", Holder: holder, Fingerprint: "fp-" + holder, ReleaseHash: "r-" + holder, NotAfter: now.Add(time.Hour)}
}

// Three allocators (three coordinators) over one store hand out every address
// of the network exactly once between them, however their calls interleave.
func TestAllocatorsShareTheStore(t *testing.T) {
	for _, spread := range []bool{false, true} {
		for name, open := range stores(t) {
			t.Run(fmt.Sprintf("%s/spread=%v", name, spread), func(t *testing.T) { shareTheStore(t, open, spread) })
		}
	}
}

func shareTheStore(t *testing.T, open func(t *testing.T) store.Store, spread bool) {
	ctx := context.Background()
	all := allocators(t, open(t), 3)
	if spread {
		for i, a := range all {
			a.Spread(fmt.Sprintf("https://c%d:7080", i))
		}
	}
	now := time.Now()
	var mu sync.Mutex
	got := map[netip.Addr]string{}
	var wg sync.WaitGroup
	exhausted := 0
	for i := range 90 { // more than the 61 free addresses
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := all[i%3]
			holder := fmt.Sprintf("h%d", i)
			c, err := a.Allocate(ctx, netip.Addr{}, holder, "web", now)
			if errors.Is(err, issuer.ErrExhausted) {
				mu.Lock()
				exhausted++
				mu.Unlock()
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			if err := a.Record(ctx, c, lease(c, holder, now)); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if other, dup := got[c.IP]; dup {
				t.Errorf("%s given to %s and %s", c.IP, other, holder)
			}
			got[c.IP] = holder
		}()
	}
	wg.Wait()
	if len(got) != 61 || exhausted != 29 {
		t.Fatalf("%d addresses handed out, %d refused as exhausted; want 61 and 29", len(got), exhausted)
	}
	if _, ok := got[netip.MustParseAddr("10.42.0.1")]; ok {
		t.Fatal("the lighthouse's address was handed out")
	}
}

func TestAllocatorClaims(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	all := allocators(t, st, 2)
	a, b := all[0], all[1]

	// The same key enrolling again, at another coordinator, keeps its address.
	c1, err := a.Allocate(ctx, netip.Addr{}, "key1", "web", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Record(ctx, c1, lease(c1, "key1", now)); err != nil {
		t.Fatal(err)
	}
	c2, err := b.Allocate(ctx, netip.Addr{}, "key1", "web", now)
	if err != nil {
		t.Fatal(err)
	}
	if c2.IP != c1.IP {
		t.Fatalf("the same key got %s at the second coordinator, had %s", c2.IP, c1.IP)
	}
	if err := b.Record(ctx, c2, lease(c2, "key1", now)); err != nil {
		t.Fatal(err)
	}
	// A claim whose coordinator died before signing holds the address for a
	// minute, and the same key retried elsewhere gets it.
	c3, err := a.Allocate(ctx, netip.Addr{}, "key2", "web", now)
	if err != nil {
		t.Fatal(err)
	}
	if c4, _ := b.Allocate(ctx, netip.Addr{}, "key2", "web", now); c4.IP != c3.IP {
		t.Fatalf("a retry of key2 got %s, its claim is on %s", c4.IP, c3.IP)
	}
	if c5, _ := b.Allocate(ctx, netip.Addr{}, "key3", "web", now); c5.IP == c3.IP {
		t.Fatalf("key3 got %s while key2's claim holds it", c5.IP)
	}
	// After the hold another key may take it (once the search comes round
	// to it), and the first claim is lost.
	later := now.Add(2 * time.Minute)
	var taken issuer.Claim
	var holder string
	for i := range 62 {
		holder = fmt.Sprintf("key4-%d", i)
		c, err := b.Allocate(ctx, netip.Addr{}, holder, "web", later)
		if err != nil {
			t.Fatal(err)
		}
		if c.IP == c3.IP {
			taken = c
			break
		}
		if err := b.Record(ctx, c, lease(c, holder, later)); err != nil {
			t.Fatal(err)
		}
	}
	if taken.IP != c3.IP {
		t.Fatalf("the expired claim on %s was never reused", c3.IP)
	}
	if err := b.Record(ctx, taken, lease(taken, holder, later)); err != nil {
		t.Fatal(err)
	}
	if err := a.Record(ctx, c3, lease(c3, "key2", now)); !errors.Is(err, issuer.ErrClaimLost) {
		t.Fatalf("recording over a lost claim: %v, want ErrClaimLost", err)
	}

	// A lease issued by one coordinator is released at another.
	if err := b.Release(ctx, c1.IP, "fp-key1", "wrong"); err == nil {
		t.Fatal("release with a wrong token succeeded")
	}
	if err := b.Release(ctx, c1.IP, "fp-key1", "r-key1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "lease-10-42-0-2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lease after release: %v", err)
	}
	if err := a.Release(ctx, c1.IP, "fp-key1", "r-key1"); err != nil {
		t.Fatalf("second release: %v", err)
	}
}

// racing is a real store whose Swap waits until n swaps are under way at once
// (or a second passes), so concurrent allocations overlap in the store every
// time, and which counts the swaps.
type racing struct {
	store.Store
	n     int
	mu    sync.Mutex
	swaps int
	gate  chan struct{}
}

func (r *racing) Swap(ctx context.Context, key string, old store.Version, value []byte) (store.Version, error) {
	r.mu.Lock()
	r.swaps++
	if r.swaps == r.n {
		close(r.gate)
	}
	r.mu.Unlock()
	select {
	case <-r.gate:
	case <-time.After(time.Second):
	}
	return r.Store.Swap(ctx, key, old, value)
}

// One coordinator's concurrent enrolments claim different addresses instead
// of racing each other for the lowest free one in the store.
func TestAllocatorConcurrentClaims(t *testing.T) {
	const n = 8
	fs, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &racing{Store: fs, n: n, gate: make(chan struct{})}
	a := allocators(t, st, 1)[0]
	now := time.Now()
	var wg sync.WaitGroup
	ips := make([]netip.Addr, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := a.Allocate(context.Background(), netip.Addr{}, fmt.Sprintf("key%d", i), "web", now)
			if err != nil {
				t.Error(err)
				return
			}
			ips[i] = c.IP
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for _, ip := range ips {
		if seen[ip] {
			t.Fatalf("%s claimed twice: %v", ip, ips)
		}
		seen[ip] = true
	}
	if st.swaps != n {
		t.Fatalf("%d concurrent claims took %d compare-and-swaps, want %d (no lost races)", n, st.swaps, n)
	}
}
