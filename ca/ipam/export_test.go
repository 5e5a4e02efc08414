package ipam

import (
	"fmt"
	"maps"
	"net/netip"
	"sync"

	"github.com/sealmesh/sealmesh/ca/store"
)

// CheckIndex compares the indexes with ones built from scratch from the
// leases: what the blocklist reads must never miss a lease.
func (a *Allocator) CheckIndex() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	got, gotSup := a.byHolder, a.superseding
	defer func() { a.byHolder, a.superseding = got, gotSup }()
	a.replace(a.leases)
	if !maps.EqualFunc(got, a.byHolder, func(x, y map[netip.Addr]struct{}) bool { return maps.Equal(x, y) }) {
		return fmt.Errorf("holder index %v, leases say %v", got, a.byHolder)
	}
	if !maps.Equal(gotSup, a.superseding) {
		return fmt.Errorf("superseding index %v, leases say %v", gotSup, a.superseding)
	}
	return nil
}

// Apply is Follow's step for one update.
func (a *Allocator) Apply(u store.Update, warn func(key string, err error)) { a.apply(u, warn) }

// Record is the key and version of the lease record at ip in the copy.
func (a *Allocator) Record(ip netip.Addr) (string, store.Version) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return leaseKey(ip), a.leases[ip].version
}

// CountDecodes counts the lease records the follower decodes until the
// returned stop is called.
func CountDecodes() (count func() int, stop func()) {
	was := decodeLease
	var mu sync.Mutex
	n := 0
	decodeLease = func(b []byte, l *Lease) error {
		mu.Lock()
		n++
		mu.Unlock()
		return was(b, l)
	}
	return func() int { mu.Lock(); defer mu.Unlock(); return n }, func() { decodeLease = was }
}
