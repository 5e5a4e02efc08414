package ipam_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/ipam"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

// TestBlocklistIndex: the blocklist's indexes (leases by holder, leases
// that superseded others) follow every way a lease changes in an
// allocator's copy: its own issues and releases, a fixed address taken
// over by a new key, another coordinator's leases arriving by Refresh, and
// a restart. After each step they equal indexes built from scratch, and a
// revoked holder's certificates and the superseded ones are reported.
func TestBlocklistIndex(t *testing.T) {
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	as := allocators(t, st, 2)
	a, other := as[0], as[1]
	ctx, now := context.Background(), time.Now()
	check := func(step string) {
		t.Helper()
		for i, x := range []*ipam.Allocator{a, other} {
			if err := x.CheckIndex(); err != nil {
				t.Fatalf("%s: allocator %d: %v", step, i, err)
			}
		}
	}
	var leases []ipam.Lease
	for i := range 10 {
		l, err := issue(a, fmt.Sprintf("k%d", i), now)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	check("issued")
	if err := a.Release(ctx, leases[3].IP, leases[3].Fingerprint, leases[3].ReleaseHash); err != nil {
		t.Fatal(err)
	}
	check("released")
	// A fixed address (a lighthouse's) leased to one key, then another:
	// the new lease supersedes the old key's certificate.
	fixed := netip.MustParseAddr("10.42.0.60")
	for _, holder := range []string{"lh-old", "lh-new"} {
		if _, err := a.Issue(ctx, fixed, holder, "lighthouse", now, func(ip netip.Addr) (ipam.Lease, error) {
			return lease(ip, holder, now), nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check("superseded")
	if got := a.Superseded(now); !slices.Equal(got, []string{"fp-lh-old"}) {
		t.Fatalf("superseded %v, want the old key's certificate", got)
	}
	if _, err := issue(other, "elsewhere", now); err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	check("refreshed")
	if got := a.HeldBy([]string{"k1", "elsewhere", "lh-new", "nobody"}, now); !slices.Equal(got, []string{"fp-elsewhere", "fp-k1", "fp-lh-new"}) {
		t.Fatalf("held by the revoked holders: %v", got)
	}
	m, err := manifest.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	restarted, err := ipam.NewAllocator(ctx, st, m, leaseKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.CheckIndex(); err != nil {
		t.Fatalf("restarted: %v", err)
	}
	if got := restarted.HeldBy([]string{"k3"}, now); !slices.Equal(got, []string{"fp-k3"}) {
		t.Fatalf("a released lease's certificate is live until it expires, and its holder's revocation must name it: %v", got)
	}
}

// Issue 29: a change the store reports at the version the allocator
// already holds (its own write, which it applied when it made it) is not
// decoded and checked again; a change at another version is.
func TestFollowSkipsKnownRecords(t *testing.T) {
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := allocators(t, st, 1)[0]
	now := time.Now()
	l, err := issue(a, "k", now)
	if err != nil {
		t.Fatal(err)
	}
	key, v := a.Record(l.IP)
	var decoded []string
	warn := func(key string, err error) { decoded = append(decoded, key) }
	// Not JSON: decoding it would warn.
	a.Apply(store.Update{Changes: []store.Change{{Key: key, Version: v, Value: []byte("{")}}}, warn)
	a.Apply(store.Update{Reset: true, Changes: []store.Change{{Key: key, Version: v, Value: []byte("{")}}}, warn)
	if len(decoded) != 0 {
		t.Fatalf("the allocator's own record was decoded again: %v", decoded)
	}
	if got := a.HeldBy([]string{"k"}, now); !slices.Equal(got, []string{l.Fingerprint}) {
		t.Fatalf("k's certificates after the known record %v, want %s", got, l.Fingerprint)
	}
	a.Apply(store.Update{Changes: []store.Change{{Key: key, Version: v + "x", Value: []byte("{")}}}, warn)
	if !slices.Equal(decoded, []string{key}) {
		t.Fatalf("a record at a new version was not decoded: %v", decoded)
	}
}
