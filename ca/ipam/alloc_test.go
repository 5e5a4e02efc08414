package ipam_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/ipam"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/store/etcdstore"
	"github.com/sealmesh/sealmesh/manifest"
	"github.com/sealmesh/sealmesh/test/tools"
)

// A manifest with a /26: 62 host addresses, one of them a lighthouse's.
const raw = `{
  "version": 1,
  "owners": [{"name": "alice", "key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}],
  "networks": ["10.42.0.0/26"],
  "roles": [{"name": "web", "groups": ["web"], "attestation": {"simulated": {"measurements": ["000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"], "rootFingerprint": "0000000000000000000000000000000000000000000000000000000000000000"}}}],
  "lighthouses": [{"name": "lh1", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh1", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}]
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
			s, err := etcdstore.Open([]string{tools.StartEtcd(t)}, "/alloc-test/")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func allocators(t *testing.T, st store.Store, n int) []*ipam.Allocator {
	m, err := manifest.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out []*ipam.Allocator
	for range n {
		a, err := ipam.NewAllocator(context.Background(), st, m, leaseKey)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func lease(ip netip.Addr, holder string, now time.Time) ipam.Lease {
	return ipam.Lease{IP: ip, Name: "web-" + ip.String(), Role: "web", Holder: holder, Fingerprint: "fp-" + holder, ReleaseHash: "r-" + holder, NotAfter: now.Add(time.Hour)}
}

// issue leases an address to holder through a, as an enrolment does.
func issue(a *ipam.Allocator, holder string, now time.Time) (ipam.Lease, error) {
	return a.Issue(context.Background(), netip.Addr{}, holder, "web", now, func(ip netip.Addr) (ipam.Lease, error) {
		return lease(ip, holder, now), nil
	})
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
			l, err := issue(a, holder, now)
			if errors.Is(err, ipam.ErrExhausted) {
				mu.Lock()
				exhausted++
				mu.Unlock()
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if other, dup := got[l.IP]; dup {
				t.Errorf("%s given to %s and %s", l.IP, other, holder)
			}
			got[l.IP] = holder
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

// An allocator that follows the store learns the leases other coordinators
// make and end, without listing them again: for status, and so that it
// searches past addresses taken elsewhere and reuses those given back. A
// record that does not decode is reported and the rest still followed.
func TestAllocatorFollow(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			all := allocators(t, st, 2)
			a, b := all[0], all[1]
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var bad atomic.Int32
			done := make(chan struct{})
			go func() {
				defer close(done)
				b.Follow(ctx, 10*time.Millisecond, func(key string, err error) {
					if key == "lease-corrupt" {
						bad.Add(1)
					} else {
						t.Errorf("%s: %v", key, err)
					}
				})
			}()
			now := time.Now()
			var made []ipam.Lease
			for i := range 5 {
				l, err := issue(a, fmt.Sprintf("h%d", i), now)
				if err != nil {
					t.Fatal(err)
				}
				made = append(made, l)
			}
			if err := st.Put(ctx, "lease-corrupt", []byte("{")); err != nil {
				t.Fatal(err)
			}
			awaitLive(t, b, now, made)
			for _, l := range made[:2] {
				if err := a.Release(ctx, l.IP, l.Fingerprint, l.ReleaseHash); err != nil {
					t.Fatal(err)
				}
			}
			awaitLive(t, b, now, made[2:])
			if bad.Load() == 0 {
				t.Error("the corrupt record was not reported")
			}
			cancel()
			<-done
		})
	}
}

// awaitLive waits until a's live leases are want's addresses.
func awaitLive(t *testing.T, a *ipam.Allocator, now time.Time, want []ipam.Lease) {
	t.Helper()
	var w []netip.Addr
	for _, l := range want {
		w = append(w, l.IP)
	}
	var got []netip.Addr
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		got = got[:0]
		for _, l := range a.Live(now) {
			got = append(got, l.IP)
		}
		if fmt.Sprint(got) == fmt.Sprint(w) {
			return
		}
	}
	t.Fatalf("live leases %v, want %v", got, w)
}

func TestAllocatorIssue(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	all := allocators(t, st, 2)
	a, b := all[0], all[1]

	// The same key enrolling again, at another coordinator, keeps its address.
	l1, err := issue(a, "key1", now)
	if err != nil {
		t.Fatal(err)
	}
	if l2, err := issue(b, "key1", now); err != nil || l2.IP != l1.IP {
		t.Fatalf("the same key got %s (%v) at the second coordinator, had %s", l2.IP, err, l1.IP)
	}

	// Two coordinators sign certificates for the same address at once: the
	// one recorded first counts, and the other is signed again for another
	// address (b does not know a's choice; its search starts where a's does).
	var signed []netip.Addr
	var l3 ipam.Lease
	l2, err := a.Issue(ctx, netip.Addr{}, "key2", "web", now, func(ip netip.Addr) (ipam.Lease, error) {
		signed = append(signed, ip)
		if len(signed) == 1 {
			if l3, err = issue(b, "key3", now); err != nil {
				t.Fatal(err)
			}
		}
		return lease(ip, "key2", now), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(signed) != 2 || signed[0] != l3.IP || l2.IP == l3.IP || l2.IP != signed[1] {
		t.Fatalf("key2 signed for %v and got %s; key3 got %s", signed, l2.IP, l3.IP)
	}
	for _, l := range []ipam.Lease{l2, l3} {
		if b, err := st.Get(ctx, "lease-"+strings.ReplaceAll(l.IP.String(), ".", "-")); err != nil || !strings.Contains(string(b), l.Fingerprint) {
			t.Fatalf("the store's record of %s: %s, %v; want %s's", l.IP, b, err, l.Holder)
		}
	}

	// A certificate that is never signed (the coordinator failed, or died
	// before recording) leaves nothing behind: the next enrolment gets the
	// address it was for.
	var lost netip.Addr
	boom := errors.New("signing failed")
	if _, err := a.Issue(ctx, netip.Addr{}, "key4", "web", now, func(ip netip.Addr) (ipam.Lease, error) {
		lost = ip
		return ipam.Lease{}, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("a failed signature: %v", err)
	}
	if _, err := st.Get(ctx, "lease-"+strings.ReplaceAll(lost.String(), ".", "-")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a record for %s, whose certificate was never signed: %v", lost, err)
	}
	if l5, err := issue(a, "key5", now); err != nil || l5.IP != lost {
		t.Fatalf("the next enrolment got %s (%v), want %s", l5.IP, err, lost)
	}

	// A lease issued by one coordinator is released at another.
	if err := b.Release(ctx, l1.IP, "fp-key1", "wrong"); err == nil {
		t.Fatal("release with a wrong token succeeded")
	}
	if err := b.Release(ctx, l1.IP, "fp-key1", "r-key1"); err != nil {
		t.Fatal(err)
	}
	if b, err := st.Get(ctx, "lease-10-42-0-2"); err != nil || !strings.Contains(string(b), `"released":true`) {
		t.Fatalf("lease after release: %s, %v", b, err)
	}
	if err := a.Release(ctx, l1.IP, "fp-key1", "r-key1"); err != nil {
		t.Fatalf("second release: %v", err)
	}
}

// Finding 5 of the attack review: a release ended the lease but not the
// certificate, and the next enrolment got the address while the released
// certificate was still valid: two live certificates for one IP. A
// released address stays taken until its certificate expires.
func TestReleaseKeepsAddressUntilExpiry(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			a := allocators(t, open(t), 1)[0]
			now := time.Now()
			first, err := issue(a, "first", now)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Release(ctx, first.IP, first.Fingerprint, first.ReleaseHash); err != nil {
				t.Fatal(err)
			}
			for _, l := range a.Live(now) {
				if l.IP == first.IP {
					t.Fatal("a released lease is listed as live")
				}
			}
			// Searches start after the last address handed out; ask for
			// the released one outright too.
			second, err := issue(a, "second", now)
			if err != nil || second.IP == first.IP {
				t.Fatalf("the next enrolment got %s (%v) while %s's certificate is valid", second.IP, err, first.IP)
			}
			if got := a.HeldBy([]string{"first"}, now); len(got) != 1 {
				t.Fatalf("the released certificate is not counted for its holder's revocation: %v", got)
			}
			for i := range 253 {
				l, err := issue(a, fmt.Sprintf("k%d", i), now)
				if errors.Is(err, ipam.ErrExhausted) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if l.IP == first.IP {
					t.Fatalf("enrolment %d got the released address %s before its certificate expired", i, l.IP)
				}
			}
			later := first.NotAfter.Add(ipam.ExpiryGrace + time.Second)
			var reused bool
			for i := range 300 {
				l, err := issue(a, fmt.Sprintf("later%d", i), later)
				if err != nil {
					break
				}
				if l.IP == first.IP {
					reused = true
					break
				}
			}
			if !reused {
				t.Fatalf("%s was never handed out again after its certificate expired", first.IP)
			}
		})
	}
}

// counting is a real store that counts compare-and-swaps and reads.
type counting struct {
	store.Store
	swaps, reads atomic.Int32
}

func (c *counting) Swap(ctx context.Context, key string, old store.Version, value []byte, also ...store.Record) (store.Version, error) {
	c.swaps.Add(1)
	return c.Store.Swap(ctx, key, old, value, also...)
}

func (c *counting) Get(ctx context.Context, key string) ([]byte, error) {
	c.reads.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *counting) GetVersion(ctx context.Context, key string) ([]byte, store.Version, error) {
	c.reads.Add(1)
	return c.Store.GetVersion(ctx, key)
}

// A new key's lease costs one write and no read: its pointer goes in the
// same compare-and-swap, on condition that there is none. A key seen before
// costs more, and keeps its address; one whose lease has ended gets a new
// address, and its pointer follows.
func TestAllocatorHolderPointer(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			st := &counting{Store: open(t)}
			all := allocators(t, st, 2)
			a, b := all[0], all[1]
			now := time.Now()
			pointer := func(holder string) string {
				v, err := st.Store.Get(context.Background(), "holder-"+holder)
				if err != nil {
					t.Fatal(err)
				}
				return string(v)
			}
			first := map[string]string{} // each holder's first address
			for _, tc := range []struct {
				name         string
				at           *ipam.Allocator
				holder       string
				now          time.Time
				same         string // the holder whose first address this must be ("": a new one)
				swaps, reads int32  // at most
			}{
				{name: "new key", at: a, holder: "k1", now: now, swaps: 1, reads: 0},
				{name: "another new key", at: a, holder: "k2", now: now, swaps: 1, reads: 0},
				{name: "again, here", at: a, holder: "k1", now: now, same: "k1", swaps: 2, reads: 3},
				{name: "again, at the other", at: b, holder: "k1", now: now, same: "k1", swaps: 2, reads: 3},
				{name: "its lease ended", at: a, holder: "k2", now: now.Add(2 * time.Hour), swaps: 2, reads: 3},
			} {
				st.swaps.Store(0)
				st.reads.Store(0)
				l, err := issue(tc.at, tc.holder, tc.now)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if n, r := st.swaps.Load(), st.reads.Load(); n > tc.swaps || r > tc.reads {
					t.Errorf("%s: %d compare-and-swaps and %d reads, want at most %d and %d", tc.name, n, r, tc.swaps, tc.reads)
				}
				if got := pointer(tc.holder); got != l.IP.String() {
					t.Errorf("%s: got %s, its pointer names %s", tc.name, l.IP, got)
				}
				if tc.same != "" && l.IP.String() != first[tc.same] {
					t.Errorf("%s: got %s, had %s", tc.name, l.IP, first[tc.same])
				}
				if _, ok := first[tc.holder]; !ok {
					first[tc.holder] = l.IP.String()
				}
			}
		})
	}
}

// A coordinator whose search runs into addresses another one handed out
// meanwhile moves elsewhere instead of trailing it, losing one address after
// another.
func TestAllocatorMovesAwayFromAnother(t *testing.T) {
	fs, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &counting{Store: fs}
	m, err := manifest.Parse([]byte(strings.Replace(raw, "10.42.0.0/26", "10.42.0.0/16", 1)))
	if err != nil {
		t.Fatal(err)
	}
	var all []*ipam.Allocator
	for range 2 {
		a, err := ipam.NewAllocator(context.Background(), st, m, leaseKey)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, a)
	}
	now := time.Now()
	for i := range 20 { // a's, from the start b's search begins at too
		if _, err := issue(all[0], fmt.Sprintf("a%d", i), now); err != nil {
			t.Fatal(err)
		}
	}
	st.swaps.Store(0)
	for i := range 20 {
		if _, err := issue(all[1], fmt.Sprintf("b%d", i), now); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.swaps.Load(); n > 25 {
		t.Fatalf("20 enrolments at the second coordinator took %d compare-and-swaps (trailing the first's 20 addresses takes 40)", n)
	}
}

// conflicting is a store on which every compare-and-swap loses.
type conflicting struct{ store.Store }

func (conflicting) Swap(context.Context, string, store.Version, []byte, ...store.Record) (store.Version, error) {
	return "", store.ErrConflict
}

// An enrolment that keeps losing its address gives up, with an error that
// says to retry, instead of searching for ever.
func TestAllocatorGivesUp(t *testing.T) {
	fs, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := allocators(t, conflicting{fs}, 1)[0]
	if _, err := issue(a, "key", time.Now()); !errors.Is(err, ipam.ErrClaimLost) {
		t.Fatalf("every swap lost: %v, want ErrClaimLost", err)
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

func (r *racing) Swap(ctx context.Context, key string, old store.Version, value []byte, also ...store.Record) (store.Version, error) {
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
	return r.Store.Swap(ctx, key, old, value, also...)
}

// One coordinator's concurrent enrolments choose different addresses instead
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
			l, err := issue(a, fmt.Sprintf("key%d", i), now)
			if err != nil {
				t.Error(err)
				return
			}
			ips[i] = l.IP
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
		t.Fatalf("%d concurrent enrolments took %d compare-and-swaps, want %d (no lost races)", n, st.swaps, n)
	}
}

// overtaken is a store in which, just after the first read of key, another
// coordinator writes it (race runs once).
type overtaken struct {
	store.Store
	key  string
	once sync.Once
	race func()
}

func (r *overtaken) GetVersion(ctx context.Context, key string) ([]byte, store.Version, error) {
	b, v, err := r.Store.GetVersion(ctx, key)
	if key == r.key {
		r.once.Do(r.race)
	}
	return b, v, err
}

// A release that reads its lease, and then finds the address leased again
// (the certificate expired and another coordinator gave the address to
// another holder), ends nothing: the new lease stays.
func TestAllocatorReleaseRace(t *testing.T) {
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			ctx := context.Background()
			past := time.Now().Add(-2 * time.Hour)
			old, err := issue(allocators(t, st, 1)[0], "old", past) // expired an hour ago
			if err != nil {
				t.Fatal(err)
			}
			key := "lease-" + strings.ReplaceAll(old.IP.String(), ".", "-")
			r := &overtaken{Store: st, key: key}
			a := allocators(t, r, 1)[0]
			now := time.Now()
			var next ipam.Lease
			r.race = func() {
				// Another coordinator leases the expired address to "new"
				// (asked for by address, so that no search is involved).
				other := allocators(t, st, 1)[0]
				next, err = other.Issue(ctx, old.IP, "new", "web", now, func(ip netip.Addr) (ipam.Lease, error) {
					return lease(ip, "new", now), nil
				})
				if err != nil || next.IP != old.IP {
					t.Errorf("the other coordinator leased %v, %v; want %s", next.IP, err, old.IP)
				}
			}
			if err := a.Release(ctx, old.IP, old.Fingerprint, old.ReleaseHash); err != nil {
				t.Fatal(err)
			}
			b, err := st.Get(ctx, key)
			if err != nil || !strings.Contains(string(b), `"holder":"new"`) {
				t.Fatalf("the new lease after the old one's release: %s, %v", b, err)
			}
		})
	}
}

// leaseKey authenticates the tests' lease records, as a seed's LeaseKey does.
var leaseKey = []byte("lease key of the issuer tests, 32")

// Finding 4 of the attack review: lease records were unsigned. Deleting a
// live lease's record made the coordinator hand its address to a second
// key, and a forged record with a forged holder pointer steered a renewing
// host to an address of the writer's choosing.
func TestLeaseRecordsAreAuthenticated(t *testing.T) {
	ctx := context.Background()
	now := time.Now()

	t.Run("deleted record", func(t *testing.T) {
		st, err := store.OpenFile(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		a := allocators(t, st, 1)[0]
		first, err := issue(a, "first", now)
		if err != nil {
			t.Fatal(err)
		}
		key := "lease-" + strings.ReplaceAll(first.IP.String(), ".", "-")
		if err := st.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if err := a.Refresh(ctx); err != nil { // the listing a poll makes
			t.Fatal(err)
		}
		for i := range 300 {
			l, err := issue(a, fmt.Sprintf("k%d", i), now)
			if errors.Is(err, ipam.ErrExhausted) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.IP == first.IP {
				t.Fatalf("enrolment %d got %s, whose record vanished while its certificate is live", i, l.IP)
			}
		}
	})

	t.Run("forged record and pointer", func(t *testing.T) {
		st, err := store.OpenFile(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		a := allocators(t, st, 1)[0]
		victim, err := issue(a, "victim", now)
		if err != nil {
			t.Fatal(err)
		}
		chosen := netip.MustParseAddr("10.42.0.200")
		forged := lease(chosen, "victim", now)
		b, _ := json.Marshal(forged)
		if err := st.Put(ctx, "lease-10-42-0-200", b); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, "holder-victim", []byte(chosen.String())); err != nil {
			t.Fatal(err)
		}
		// At the coordinator that issued it, and at one started since.
		for i, a := range []*ipam.Allocator{a, allocators(t, st, 1)[0]} {
			renewed, err := issue(a, "victim", now)
			if err != nil {
				t.Fatal(err)
			}
			if renewed.IP != victim.IP {
				t.Fatalf("allocator %d: the renewal moved from %s to %s (the forged record names %s)", i, victim.IP, renewed.IP, chosen)
			}
		}
		if err := a.Release(ctx, chosen, forged.Fingerprint, forged.ReleaseHash); err == nil || !strings.Contains(err.Error(), "does not verify") {
			t.Fatalf("a forged record released: %v", err)
		}
		for _, l := range a.Live(now) {
			if l.IP == chosen {
				t.Fatal("a forged record is listed as a live lease")
			}
		}
	})
}

// Finding 18 of the attack review: an address was free the moment its
// certificate's NotAfter passed by the coordinator's clock, so a coordinator
// whose clock was pushed forward handed out addresses whose certificates
// hosts still accepted. An address stays taken for ExpiryGrace after.
func TestExpiryGrace(t *testing.T) {
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := allocators(t, st, 1)[0]
	now := time.Now()
	var all []ipam.Lease
	for i := 0; ; i++ {
		l, err := issue(a, fmt.Sprintf("k%d", i), now)
		if errors.Is(err, ipam.ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, l)
	}
	end := all[0].NotAfter
	if _, err := issue(a, "ahead", end.Add(ipam.ExpiryGrace-time.Second)); !errors.Is(err, ipam.ErrExhausted) {
		t.Fatalf("a clock %s past every certificate's end: %v, want no address", ipam.ExpiryGrace-time.Second, err)
	}
	if _, err := issue(a, "later", end.Add(ipam.ExpiryGrace+time.Second)); err != nil {
		t.Fatalf("past the grace: %v", err)
	}
}

// echoing is a store whose watch brings a write back before its swap
// returns, as etcd's often does: the update is applied from inside Swap.
type echoing struct {
	store.Store
	apply func(store.Update)
}

func (e *echoing) Swap(ctx context.Context, key string, old store.Version, value []byte, also ...store.Record) (store.Version, error) {
	v, err := e.Store.Swap(ctx, key, old, value, also...)
	if err == nil && e.apply != nil {
		e.apply(store.Update{Changes: []store.Change{{Key: key, Version: v, Value: value}}})
	}
	return v, err
}

// TestFollowSkipsOwnWritesSeenEarly: a lease this allocator wrote, seen
// back before its swap returned, is taken as written, not decoded and
// checked again; someone else's record is.
func TestFollowSkipsOwnWritesSeenEarly(t *testing.T) {
	fs, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &echoing{Store: fs}
	a := allocators(t, st, 1)[0]
	warn := func(key string, err error) { t.Errorf("%s: %v", key, err) }
	st.apply = func(u store.Update) { a.Apply(u, warn) }
	decodes, stop := ipam.CountDecodes()
	defer stop()
	now := time.Now()
	for i := range 5 {
		if _, err := issue(a, fmt.Sprint("k", i), now); err != nil {
			t.Fatal(err)
		}
	}
	if n := decodes(); n != 0 {
		t.Errorf("%d of the allocator's own records decoded again", n)
	}
	got := a.HeldBy([]string{"k0", "k1", "k2", "k3", "k4"}, now)
	if len(got) != 5 {
		t.Fatalf("certificates of k0..k4: %v", got)
	}
	// Another coordinator's write, through the same watch.
	st.apply = nil
	other := allocators(t, fs, 1)[0]
	if _, err := issue(other, "elsewhere", now); err != nil {
		t.Fatal(err)
	}
	recs, err := fs.List(context.Background(), "lease-")
	if err != nil {
		t.Fatal(err)
	}
	var u store.Update
	for k, b := range recs {
		_, v, _ := fs.GetVersion(context.Background(), k)
		u.Changes = append(u.Changes, store.Change{Key: k, Version: v, Value: b})
	}
	a.Apply(u, warn)
	if n := decodes(); n != 1 {
		t.Errorf("%d records decoded after another coordinator's write, want 1", n)
	}
}

// TestFollowOwnWritesOverEtcd: an allocator following a real etcd while it
// leases addresses concurrently (group-committed swaps, the watch's echoes
// racing the swaps' answers) decodes none of its own records again.
func TestFollowOwnWritesOverEtcd(t *testing.T) {
	st := stores(t)["etcd"](t)
	a := allocators(t, st, 1)[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	decodes, stop := ipam.CountDecodes()
	defer stop()
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		a.Follow(ctx, time.Second, func(key string, err error) { t.Errorf("%s: %v", key, err) })
	}()
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 6 { // 60 of the network's 61 free addresses
		wg.Go(func() {
			for i := range 10 {
				if _, err := issue(a, fmt.Sprint("k", w, "-", i), now); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // the watch's last echoes
	cancel()
	<-followed
	if n := decodes(); n != 0 {
		t.Errorf("%d of the allocator's 60 own records decoded again", n)
	}
}
