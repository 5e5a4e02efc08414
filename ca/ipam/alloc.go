// Package ipam hands out the overlay addresses: one lease record per address
// in the shared store, written by compare-and-swap so that coordinators
// allocating at once never give one address to two live certificates.
package ipam

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

// ErrExhausted means every host address of the network is leased.
var ErrExhausted = errors.New("ipam: overlay network has no free address")

// ErrClaimLost means every address an enrolment chose was recorded by another
// coordinator before its own record; retry.
var ErrClaimLost = errors.New("ipam: the addresses chosen were taken by other coordinators meanwhile")

// ErrReleaseRefused: the release names a lease whose record does not verify,
// or gives the wrong release token. Other release errors are the store's.
var ErrReleaseRefused = errors.New("ipam: release refused")

// choice is an address chosen for a certificate, not yet recorded.
type choice struct {
	ip netip.Addr
	// version is the lease record's the choice was made from ("" for none),
	// for the compare-and-swap that records the certificate.
	version store.Version
	// held: the address is the holder's already (its pointer names it, or
	// it is fixed): no pointer is written and the search does not move.
	held bool
	// prev is the record the choice replaces (zero if none or unknown).
	prev Lease
	// pointer is the version of the holder's pointer to replace ("" for
	// none) when the choice is not held.
	pointer store.Version
}

type entry struct {
	lease   Lease
	version store.Version
	// valid: the record's MAC verifies. A record that does not is never
	// taken for a holder's (renewals are not steered by it) nor listed, but
	// its address is not handed out before the end it claims either.
	valid bool
	// vanished: the record was deleted from the store while its
	// certificate was live. Nothing this mesh does deletes a lease record,
	// so the store was tampered with; the address stays taken until the
	// certificate's end as last seen.
	vanished bool
}

// Allocator hands out overlay IPs from the manifest's network, skipping the
// addresses the manifest fixes for lighthouses. Every lease record is written
// by compare-and-swap in the shared store, so coordinators that allocate at
// the same time never hand out one address twice; what an allocator holds in
// memory is only a guide to which addresses are likely free.
type Allocator struct {
	mu       sync.Mutex
	key      []byte // keys.Seed.LeaseKey
	st       store.Store
	network  netip.Prefix
	reserved map[netip.Addr]bool
	// leases is written only through put, drop and replace, which keep
	// byHolder and superseding with it: the blocklist every enrolment
	// answers is read from those, not from a pass over every lease (at 30k
	// leases that pass was most of an enrolment's CPU).
	leases      map[netip.Addr]entry
	byHolder    map[string]map[netip.Addr]struct{}
	superseding map[netip.Addr]struct{}
	// busy are the addresses this coordinator's own enrolments are claiming
	// right now: concurrent enrolments pass over each other's pick instead
	// of racing for it in the store (each lost race costs a read and a try).
	busy map[netip.Addr]bool
	// written are the lease records this allocator last wrote, by
	// address, as written: the store's watch often brings a write back
	// before its swap has returned and put it in the copy, and a record
	// equal to one of these is taken as it is instead of being decoded
	// and its MAC checked again (most of the follower's CPU).
	written map[netip.Addr]writtenLease
	// start is where the next search begins: just after the address this
	// allocator handed out last (next fit, as host-local IPAM does: a search
	// costs the free addresses it passes, not every lease below it, and a
	// released address is not handed out again at once). It begins at the
	// network's first host address or, for a member of a coordinator
	// cluster, at a point of its own (Spread), so members enrolling at once
	// do not all race for the same address.
	start netip.Addr
}

// writtenLease is a lease record as this allocator wrote it.
type writtenLease struct {
	data  []byte
	lease Lease // MAC included
}

// Spread makes searches start at a point derived from member (a
// coordinator's name or URL) instead of the network's first address.
func (a *Allocator) Spread(member string) {
	h := sha256.Sum256([]byte(member))
	ip := a.nth(binary.BigEndian.Uint64(h[:8]) % uint64(a.size()))
	a.mu.Lock()
	a.start = ip
	a.mu.Unlock()
}

// SetReserved replaces the addresses that are never handed out (the manifest's
// lighthouses), after a manifest update.
func (a *Allocator) SetReserved(m *manifest.Manifest) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reserved = map[netip.Addr]bool{}
	for _, l := range m.Lighthouses {
		a.reserved[netip.MustParseAddr(l.OverlayIP)] = true
	}
}

// NewAllocator loads existing leases from st; key authenticates lease
// records (keys.Seed.LeaseKey).
func NewAllocator(ctx context.Context, st store.Store, m *manifest.Manifest, key []byte) (*Allocator, error) {
	a := &Allocator{key: key, st: st, network: m.Prefix(), reserved: map[netip.Addr]bool{}, busy: map[netip.Addr]bool{},
		written: map[netip.Addr]writtenLease{}}
	a.SetReserved(m)
	if err := a.Refresh(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// Refresh reloads the leases from the store (other coordinators' included).
func (a *Allocator) Refresh(ctx context.Context) error {
	recs, err := a.st.List(ctx, leasePrefix)
	if err != nil {
		return err
	}
	leases := make(map[netip.Addr]entry, len(recs))
	for k, b := range recs {
		var l Lease
		if err := json.Unmarshal(b, &l); err != nil {
			return fmt.Errorf("ipam: lease record %s is corrupt: %w", k, err)
		}
		// List gives no versions: a swap from "" fails on an existing
		// record and re-reads it, which is what a stale guess costs.
		leases[l.IP] = entry{lease: l, valid: a.verify(l)}
	}
	a.mu.Lock()
	a.replace(a.keepVanished(leases, time.Now()))
	a.mu.Unlock()
	return nil
}

// keepVanished adds to leases, a complete listing of the store, the
// addresses this allocator knew live leases of that the listing lacks.
func (a *Allocator) keepVanished(leases map[netip.Addr]entry, now time.Time) map[netip.Addr]entry {
	for ip, e := range a.leases {
		if _, ok := leases[ip]; !ok && e.lease.taken(now) {
			e.vanished, e.version = true, ""
			leases[ip] = e
		}
	}
	return leases
}

// vanish records that ip's record was deleted: kept as taken while the
// certificate last seen there is live.
func (a *Allocator) vanishLocked(ip netip.Addr, now time.Time) {
	e, ok := a.leases[ip]
	if !ok || !e.lease.taken(now) {
		a.drop(ip)
		return
	}
	e.vanished, e.version = true, ""
	a.put(ip, e)
}

// mac is the record's authenticator.
func (a *Allocator) mac(l Lease) string {
	l.MAC = ""
	b, _ := json.Marshal(l) // a Lease always marshals
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte("sealmesh lease v1\x00"))
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

func (a *Allocator) verify(l Lease) bool {
	return l.MAC != "" && hmac.Equal([]byte(l.MAC), []byte(a.mac(l)))
}

// Follow keeps the allocator's copy of the leases current from the store's
// changes (store.Follow: a watch where the store has one, a listing about
// every poll where it has not) until ctx ends: other coordinators' leases,
// for status, and released or expired addresses, for the search. A lease
// record that does not decode is logged with log and left out.
func (a *Allocator) Follow(ctx context.Context, poll time.Duration, warn func(key string, err error)) {
	for u := range store.Follow(ctx, a.st, leasePrefix, poll) {
		a.apply(u, warn)
	}
}

// decodeLease decodes a lease record the follower did not know (a
// variable: tests count its calls).
var decodeLease = func(b []byte, l *Lease) error { return json.Unmarshal(b, l) }

// apply brings one update into the copy of the leases.
func (a *Allocator) apply(u store.Update, warn func(key string, err error)) {
	// A record the copy holds, verified, at the version the store reports
	// (this allocator's own write, applied when it was made, or a
	// listing's unchanged record) is not decoded and checked again: that
	// was a sixteenth of the coordinator's CPU per enrolment.
	known := map[netip.Addr]entry{}
	a.mu.Lock()
	for _, c := range u.Changes {
		ip, ok := leaseAddr(c.Key)
		if !ok || c.Deleted {
			continue
		}
		if e, ok := a.leases[ip]; ok && e.valid && e.version == c.Version && c.Version != "" {
			known[ip] = e
		} else if w, ok := a.written[ip]; ok && bytes.Equal(w.data, c.Value) {
			known[ip] = entry{lease: w.lease, version: c.Version, valid: true}
		}
		delete(a.written, ip) // seen back: the copy has it either way
	}
	a.mu.Unlock()
	leases := map[netip.Addr]entry{}
	for _, c := range u.Changes {
		if c.Deleted {
			continue
		}
		if ip, ok := leaseAddr(c.Key); ok {
			if e, ok := known[ip]; ok {
				leases[ip] = e
				continue
			}
		}
		var l Lease
		if err := decodeLease(c.Value, &l); err != nil {
			warn(c.Key, err)
			continue
		}
		leases[l.IP] = entry{lease: l, version: c.Version, valid: a.verify(l)}
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if u.Reset {
		a.replace(a.keepVanished(leases, now))
		return
	}
	for _, c := range u.Changes {
		if c.Deleted {
			if ip, ok := leaseAddr(c.Key); ok {
				a.vanishLocked(ip, now)
			}
		}
	}
	for ip, e := range leases {
		a.put(ip, e)
	}
}

// leaseAddr is the address a lease record's key names.
func leaseAddr(key string) (netip.Addr, bool) {
	s, ok := strings.CutPrefix(key, leasePrefix)
	if !ok {
		return netip.Addr{}, false
	}
	if ip, err := netip.ParseAddr(strings.ReplaceAll(s, "-", ".")); err == nil {
		return ip, true
	}
	ip, err := netip.ParseAddr(strings.ReplaceAll(s, "-", ":"))
	return ip, err == nil
}

// Issue leases an address to holder in role: it chooses one, has sign make
// the lease (the certificate signed for that address) and records it by
// compare-and-swap against the record the choice was made from. A certificate
// counts only once its lease is recorded: if another coordinator recorded
// the address first, this one's certificate is thrown away (it was never
// handed out) and another address is chosen. So two live certificates never
// share an address, and an enrolment costs one write, not a claim and then a
// record. fixed, when valid, asks for that address (a lighthouse's). A holder
// that already has a live lease in this role gets its address back.
func (a *Allocator) Issue(ctx context.Context, fixed netip.Addr, holder, role string, now time.Time, sign func(ip netip.Addr) (Lease, error)) (Lease, error) {
	// A key is assumed new, so its lease costs one write: its pointer is
	// recorded on condition that there is none. If there is one, it is
	// looked up and the search starts again from what it says.
	lookup := false
	// Each address lost teaches this allocator the record it lost to, so
	// losses are bounded by the network's size; the bound is for a store
	// that misbehaves.
	for range 2*a.size() + 64 {
		c, err := a.choose(ctx, fixed, holder, role, now, lookup)
		if err != nil {
			return Lease{}, err
		}
		l, err := sign(c.ip)
		switch {
		case err != nil || !a.verify(c.prev):
		case c.prev.Holder == holder && holder != "":
			l.Previous = carry(c.prev, now)
			l.Superseded = supersede(Lease{Superseded: c.prev.Superseded}, now)
		case fixed.IsValid():
			l.Superseded = supersede(c.prev, now)
		}
		if err == nil {
			if l.IP != c.ip || l.Holder != holder {
				err = fmt.Errorf("ipam: a lease for %s (holder %q) was signed for %s (holder %q)", c.ip, holder, l.IP, l.Holder)
			} else {
				err = a.record(ctx, c, l)
			}
		}
		a.mu.Lock()
		delete(a.busy, c.ip)
		if errors.Is(err, errLost) && !c.held && !fixed.IsValid() {
			// Another coordinator is handing out addresses here: searching
			// on from this one would trail it, losing address after
			// address. A random point elsewhere is most likely free.
			a.start = a.random()
		}
		a.mu.Unlock()
		if errors.Is(err, errPointer) {
			lookup = true
			continue
		}
		if errors.Is(err, errLost) {
			continue
		}
		if err != nil {
			return Lease{}, err
		}
		return l, nil
	}
	return Lease{}, ErrClaimLost
}

var (
	// errLost: the record changed since the choice was made.
	errLost = errors.New("ipam: lost the address to another coordinator")
	// errPointer: the holder's pointer is not what the choice assumed.
	errPointer = errors.New("ipam: the holder's pointer changed")
)

// choose picks the address for an enrolment and marks it busy, so this
// coordinator's concurrent enrolments pass over it. Nothing is written; the
// store is read only for a fixed address, or for the holder's pointer when
// lookup is set.
func (a *Allocator) choose(ctx context.Context, fixed netip.Addr, holder, role string, now time.Time, lookup bool) (choice, error) {
	if fixed.IsValid() {
		prev, v, err := a.read(ctx, fixed)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return choice{}, err
		}
		return a.hold(choice{ip: fixed, version: v, held: true, prev: prev}), nil
	}
	var pointer store.Version
	if lookup {
		c, ok, pv, err := a.held(ctx, holder, role, now)
		if err != nil {
			return choice{}, err
		}
		if ok {
			return a.hold(c), nil
		}
		pointer = pv
	}
	// The first free address from start: coordinators that pick the same
	// one settle it by compare-and-swap when they record.
	a.mu.Lock()
	defer a.mu.Unlock()
	ip := a.start
	if !a.network.Contains(ip) {
		ip = a.network.Addr().Next()
	}
	for range a.size() {
		e, known := a.leases[ip]
		if !a.reserved[ip] && !a.busy[ip] && (!known || !e.lease.taken(now)) && !a.last(ip) {
			a.busy[ip] = true
			return choice{ip: ip, version: e.version, pointer: pointer}, nil
		}
		ip = a.next(ip)
	}
	return choice{}, ErrExhausted
}

// hold marks c's address busy (the search marks its own under its lock).
func (a *Allocator) hold(c choice) choice {
	a.mu.Lock()
	a.busy[c.ip] = true
	a.mu.Unlock()
	return c
}

// record writes the lease over the record choice c was made from, and with
// it the holder's pointer over the one c assumed (a hint: held checks the
// lease it points to). A fixed address needs no pointer: it is the holder's
// whatever the key.
func (a *Allocator) record(ctx context.Context, c choice, l Lease) error {
	var pointer []store.Record
	if l.Holder != "" && !c.held {
		pointer = append(pointer, store.Record{Key: holderPrefix + l.Holder, Old: c.pointer, Value: []byte(c.ip.String())})
	}
	v, err := a.swap(ctx, c.version, l, pointer...)
	if errors.Is(err, store.ErrConflict) {
		// Another coordinator recorded it, or the guess was stale: learn
		// the record, so the next choice knows it.
		got, gv, rerr := a.read(ctx, c.ip)
		a.mu.Lock()
		defer a.mu.Unlock()
		switch {
		case errors.Is(rerr, store.ErrNotFound):
			a.vanishLocked(c.ip, time.Now())
		case rerr != nil:
			return rerr
		default:
			a.put(c.ip, entry{lease: got, version: gv})
		}
		switch {
		case len(pointer) == 0:
		case gv == c.version: // ("" for none)
			return errPointer // the record is as chosen: the pointer was not
		case got.Holder == l.Holder:
			return errPointer // this key's own lease, recorded elsewhere
		}
		return errLost
	}
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.put(c.ip, entry{lease: l, version: v, valid: true})
	if !c.held {
		a.start = a.next(c.ip)
	}
	a.mu.Unlock()
	return nil
}

// random is a host address of the network picked at random.
func (a *Allocator) random() netip.Addr {
	var b [8]byte
	rand.Read(b[:])
	return a.nth(binary.BigEndian.Uint64(b[:]) % uint64(a.size()))
}

// nth is the network's n-th host address (counting from its first), wrapping
// round.
func (a *Allocator) nth(n uint64) netip.Addr {
	b := a.network.Masked().Addr().AsSlice()
	// Add n+1 to the address, from its last byte up (a.size() is at most
	// 2^20, so the host part is never overflowed into the network's).
	carry := n + 1
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		sum := uint64(b[i]) + carry%256
		b[i] = byte(sum)
		carry = carry/256 + sum/256
	}
	ip, _ := netip.AddrFromSlice(b)
	if !a.network.Contains(ip) || a.last(ip) {
		return a.network.Addr().Next()
	}
	return ip
}

// next is the address after ip in the search's order, wrapping round.
func (a *Allocator) next(ip netip.Addr) netip.Addr {
	ip = ip.Next()
	if !a.network.Contains(ip) || a.last(ip) {
		return a.network.Addr().Next()
	}
	return ip
}

// last: ip is the IPv4 network's broadcast address, never a host's.
func (a *Allocator) last(ip netip.Addr) bool {
	return ip.Is4() && ip == manifest.LastAddr(a.network)
}

// held returns the address holder already leases in role, if any, and
// otherwise the version of its pointer ("" for none), for the lease that
// replaces it.
func (a *Allocator) held(ctx context.Context, holder, role string, now time.Time) (choice, bool, store.Version, error) {
	if holder == "" {
		return choice{}, false, "", nil
	}
	b, pv, err := a.st.GetVersion(ctx, holderPrefix+holder)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return choice{}, false, "", err
	}
	pointed, perr := netip.ParseAddr(string(b))
	if err == nil && perr == nil && a.network.Contains(pointed) {
		if c, ok, err := a.heldAt(ctx, pointed, holder, role, now); ok || err != nil {
			return c, ok, "", err
		}
	}
	// The pointer is only a hint, and a store writer can point it anywhere:
	// the holder's lease as this allocator last saw it is the other.
	a.mu.Lock()
	var known []netip.Addr
	for ip, e := range a.leases {
		l := e.lease
		if e.valid && ip != pointed && l.Holder == holder && l.Role == role && l.NotAfter.After(now) && !l.Released {
			known = append(known, ip)
		}
	}
	a.mu.Unlock()
	for _, ip := range known {
		if c, ok, err := a.heldAt(ctx, ip, holder, role, now); ok || err != nil {
			return c, ok, "", err
		}
	}
	return choice{}, false, pv, nil
}

// heldAt reports whether the record at ip is holder's live lease in role,
// written by a coordinator of this mesh.
func (a *Allocator) heldAt(ctx context.Context, ip netip.Addr, holder, role string, now time.Time) (choice, bool, error) {
	l, v, err := a.read(ctx, ip)
	if errors.Is(err, store.ErrNotFound) {
		return choice{}, false, nil
	}
	if err != nil {
		return choice{}, false, err
	}
	if !a.verify(l) || l.Holder != holder || l.Role != role || !l.NotAfter.After(now) || l.Released {
		return choice{}, false, nil
	}
	return choice{ip: ip, version: v, held: true, prev: l}, true, nil
}

func (a *Allocator) size() int {
	bits := a.network.Addr().BitLen() - a.network.Bits()
	if bits > 20 {
		return 1 << 20 // a bound on one search, not on the network
	}
	return 1 << bits
}

func (a *Allocator) read(ctx context.Context, ip netip.Addr) (Lease, store.Version, error) {
	b, v, err := a.st.GetVersion(ctx, leaseKey(ip))
	if err != nil {
		return Lease{}, "", err
	}
	var l Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return Lease{}, "", fmt.Errorf("ipam: lease record for %s is corrupt: %w", ip, err)
	}
	return l, v, nil
}

func (a *Allocator) swap(ctx context.Context, old store.Version, l Lease, also ...store.Record) (store.Version, error) {
	l.MAC = a.mac(l)
	b, err := json.Marshal(l)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	a.written[l.IP] = writtenLease{data: b, lease: l}
	a.mu.Unlock()
	v, err := a.st.Swap(ctx, leaseKey(l.IP), old, b, also...)
	if errors.Is(err, store.ErrConflict) {
		// Not written. (After any other error it may have been.)
		a.mu.Lock()
		if w, ok := a.written[l.IP]; ok && bytes.Equal(w.data, b) {
			delete(a.written, l.IP)
		}
		a.mu.Unlock()
	}
	return v, err
}

// Release ends the lease of the certificate with this fingerprint at ip if
// releaseHash matches: the lease is marked released, and its address stays
// taken until the certificate expires (it is valid until then, and another
// host given the address would share it). Releasing an unknown or released
// lease is not an error: DEL is idempotent. An invalid ip looks the lease up
// in memory (older agents). The mark is a compare-and-swap against the lease
// checked, so a release that races the address's next lease ends nothing but
// its own.
func (a *Allocator) Release(ctx context.Context, ip netip.Addr, fingerprint, releaseHash string) error {
	if !ip.IsValid() {
		a.mu.Lock()
		for addr, e := range a.leases {
			if e.lease.Fingerprint == fingerprint {
				ip = addr
			}
		}
		a.mu.Unlock()
		if !ip.IsValid() {
			return nil
		}
	}
	for range 8 {
		l, v, err := a.read(ctx, ip)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if l.Fingerprint == "" || l.Fingerprint != fingerprint || l.Released {
			return nil
		}
		if !a.verify(l) {
			return fmt.Errorf("%w: the lease record of %s does not verify (written outside the mesh)", ErrReleaseRefused, ip)
		}
		if l.ReleaseHash == "" || l.ReleaseHash != releaseHash {
			return fmt.Errorf("%w: wrong release token for %s", ErrReleaseRefused, l.Name)
		}
		l.Released, l.ReleaseHash = true, ""
		nv, err := a.swap(ctx, v, l)
		if errors.Is(err, store.ErrConflict) {
			continue // changed since it was read: check it again
		}
		if err != nil {
			return err
		}
		a.mu.Lock()
		l.MAC = a.mac(l)
		a.put(l.IP, entry{lease: l, version: nv, valid: true})
		a.mu.Unlock()
		return nil
	}
	return fmt.Errorf("ipam: release of %s: the lease kept changing", ip)
}

// HeldBy returns the live certificates (current and renewed away) of the
// leases whose holder matches, as far as this allocator knows.
func (a *Allocator) HeldBy(holders []string, now time.Time) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, h := range holders {
		for ip := range a.byHolder[h] {
			out = append(out, a.leases[ip].lease.Fingerprints(now)...)
		}
	}
	slices.Sort(out)
	return out
}

// Superseded returns the live certificates that a new key's lease of the
// same fixed address replaced, as far as this allocator knows.
func (a *Allocator) Superseded(now time.Time) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for ip := range a.superseding {
		for _, s := range a.leases[ip].lease.Superseded {
			if s.NotAfter.After(now) {
				out = append(out, s.Fingerprint)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Current reports whether fingerprint is the live certificate of the lease
// at ip, held by holder, as the store has it now: what renewal by
// certificate needs (a certificate renewed away, superseded or released
// renews nothing). The lease is returned for its role and name.
func (a *Allocator) Current(ctx context.Context, ip netip.Addr, holder, fingerprint string, now time.Time) (Lease, bool, error) {
	l, _, err := a.read(ctx, ip)
	if errors.Is(err, store.ErrNotFound) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, err
	}
	ok := a.verify(l) && l.Holder == holder && !l.Released && slices.Contains(l.Fingerprints(now), fingerprint)
	return l, ok, nil
}

// Live returns the leases whose certificates have not expired, by IP, as far
// as this allocator knows (Refresh brings in other coordinators' leases).
func (a *Allocator) Live(now time.Time) []Lease {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Lease
	for _, e := range a.leases {
		if e.valid && !e.vanished && e.lease.Fingerprint != "" && e.lease.NotAfter.After(now) && !e.lease.Released {
			out = append(out, e.lease)
		}
	}
	slices.SortFunc(out, func(x, y Lease) int { return x.IP.Compare(y.IP) })
	return out
}
