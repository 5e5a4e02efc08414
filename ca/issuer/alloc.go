package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sealmesh/sealmesh/ca/manifest"
	"github.com/sealmesh/sealmesh/ca/store"
)

// ErrExhausted means every host address of the network is leased.
var ErrExhausted = errors.New("issuer: overlay network has no free address")

// ErrClaimLost means a claimed address was taken by another coordinator before
// its certificate was recorded (the claim outlived claimHold); retry.
var ErrClaimLost = errors.New("issuer: the address claim was lost to another coordinator")

const (
	// leasePrefix names lease records: one per lease, so an enrolment writes
	// one small record whatever the size of the mesh.
	leasePrefix = "lease-"
	// holderPrefix names the pointer from a public key to its lease, so a
	// retried enrolment of the same key (on any coordinator) gets the same
	// address instead of a second one.
	holderPrefix = "holder-"
	// claimHold is how long a claim made for a certificate being signed keeps
	// its address when the coordinator dies before recording the certificate.
	claimHold = time.Minute
)

func leaseKey(ip netip.Addr) string {
	return leasePrefix + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
}

// Holder names the holder of a public key in lease records.
func Holder(publicKey []byte) string {
	s := sha256.Sum256(publicKey)
	return hex.EncodeToString(s[:16])
}

// Lease ties an overlay IP to the certificate that carries it. A lease ends when
// the certificate expires or the holder releases it, whichever is first, so one IP
// is never in two live certificates.
type Lease struct {
	IP          netip.Addr `json:"ip"`
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	Groups      []string   `json:"groups"`
	Fingerprint string     `json:"fingerprint"`
	NotAfter    time.Time  `json:"notAfter"`
	// Holder is the public key's Holder: the same key enrolling again keeps
	// its address.
	Holder string `json:"holder,omitempty"`
	// Workload is what the requester said it is (pod namespace/name); shown in
	// status, never used for identity.
	Workload string `json:"workload,omitempty"`
	// ReleaseHash is the SHA-256 of the secret the holder must show to release.
	ReleaseHash string `json:"releaseHash,omitempty"`
}

// Claim is an address held for a certificate being signed.
type Claim struct {
	IP netip.Addr
	// version is the lease record's, for the compare-and-swap that records
	// the certificate.
	version store.Version
}

type entry struct {
	lease   Lease
	version store.Version
}

// Allocator hands out overlay IPs from the manifest's network, skipping the
// addresses the manifest fixes for lighthouses. Every lease record is written
// by compare-and-swap in the shared store, so coordinators that allocate at
// the same time never hand out one address twice; what an allocator holds in
// memory is only a guide to which addresses are likely free.
type Allocator struct {
	mu       sync.Mutex
	st       store.Store
	network  netip.Prefix
	reserved map[netip.Addr]bool
	leases   map[netip.Addr]entry
	// busy are the addresses this coordinator's own enrolments are claiming
	// right now: concurrent enrolments pass over each other's pick instead
	// of racing for it in the store (each lost race costs a read and a try).
	busy map[netip.Addr]bool
	// start is where the next search begins: just after the address this
	// allocator handed out last (next fit, as host-local IPAM does: a search
	// costs the free addresses it passes, not every lease below it, and a
	// released address is not handed out again at once). It begins at the
	// network's first host address or, for a member of a coordinator
	// cluster, at a point of its own (Spread), so members enrolling at once
	// do not all race for the same address.
	start netip.Addr
}

// Spread makes searches start at a point derived from member (a
// coordinator's name or URL) instead of the network's first address.
func (a *Allocator) Spread(member string) {
	h := sha256.Sum256([]byte(member))
	n := uint64(h[0])<<24 | uint64(h[1])<<16 | uint64(h[2])<<8 | uint64(h[3])
	ip := a.network.Addr().Next()
	for range n % uint64(a.size()) {
		ip = ip.Next()
		if !a.network.Contains(ip) {
			ip = a.network.Addr().Next()
		}
	}
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

// NewAllocator loads existing leases from st.
func NewAllocator(st store.Store, m *manifest.Manifest) (*Allocator, error) {
	a := &Allocator{st: st, network: m.Prefix(), reserved: map[netip.Addr]bool{}, busy: map[netip.Addr]bool{}}
	a.SetReserved(m)
	if err := a.Refresh(context.Background()); err != nil {
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
			return fmt.Errorf("issuer: lease record %s is corrupt: %w", k, err)
		}
		// List gives no versions: a swap from "" fails on an existing
		// record and re-reads it, which is what a stale guess costs.
		leases[l.IP] = entry{lease: l}
	}
	a.mu.Lock()
	a.leases = leases
	a.mu.Unlock()
	return nil
}

// Allocate claims an address for a certificate being issued to holder (see
// Holder) in role; commit it with Record once signed. fixed, when valid, asks
// for that address (a lighthouse's) instead. A holder that already has a live
// lease in this role gets its address back.
func (a *Allocator) Allocate(ctx context.Context, fixed netip.Addr, holder, role string, now time.Time) (Claim, error) {
	if fixed.IsValid() {
		_, v, err := a.read(ctx, fixed)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return Claim{}, err
		}
		return Claim{IP: fixed, version: v}, nil
	}
	if c, ok, err := a.held(ctx, holder, role, now); err != nil || ok {
		return c, err
	}
	// The first free address from start: coordinators that pick the same
	// one settle it by compare-and-swap, and the loser learns the record and
	// moves on.
	a.mu.Lock()
	start := a.start
	a.mu.Unlock()
	if !a.network.Contains(start) {
		start = a.network.Addr().Next()
	}
	last := manifest.LastAddr(a.network)
	next := func(ip netip.Addr) netip.Addr {
		ip = ip.Next()
		if !a.network.Contains(ip) || (ip.Is4() && ip == last) {
			return a.network.Addr().Next()
		}
		return ip
	}
	ip, visited := start, 0
	for tries := 0; visited < a.size() && tries < 2*a.size()+64; tries++ {
		a.mu.Lock()
		e, known := a.leases[ip]
		busy := a.reserved[ip] || a.busy[ip] || (known && e.lease.NotAfter.After(now)) || (ip.Is4() && ip == last)
		if !busy {
			a.busy[ip] = true
		}
		a.mu.Unlock()
		if busy {
			ip, visited = next(ip), visited+1
			continue
		}
		l := Lease{IP: ip, Holder: holder, Role: role, NotAfter: now.Add(claimHold)}
		// The holder's pointer goes to the store alongside the claim, not
		// after it: it is only a hint (held checks the lease it points
		// to), so one that points at a claim lost here misleads no one,
		// and the enrolment waits for one write instead of two.
		var pointed chan error
		if holder != "" {
			pointed = make(chan error, 1)
			go func() { pointed <- a.st.Put(ctx, holderPrefix+holder, []byte(ip.String())) }()
		}
		v, err := a.swap(ctx, e.version, l)
		var perr error
		if pointed != nil {
			perr = <-pointed
		}
		a.mu.Lock()
		delete(a.busy, ip)
		if err == nil {
			a.leases[ip] = entry{lease: l, version: v}
			a.start = next(ip)
		}
		a.mu.Unlock()
		if errors.Is(err, store.ErrConflict) {
			// Another coordinator got there first, or the guess was stale:
			// learn the record and look at this address again.
			got, gv, err := a.read(ctx, ip)
			if errors.Is(err, store.ErrNotFound) {
				a.mu.Lock()
				delete(a.leases, ip)
				a.mu.Unlock()
				continue
			}
			if err != nil {
				return Claim{}, err
			}
			a.mu.Lock()
			a.leases[ip] = entry{lease: got, version: gv}
			a.mu.Unlock()
			if !got.NotAfter.After(now) && gv != e.version {
				continue // expired: claim it from its current version
			}
			ip, visited = next(ip), visited+1
			continue
		}
		if err != nil {
			return Claim{}, err
		}
		if perr != nil {
			return Claim{}, perr
		}
		return Claim{IP: ip, version: v}, nil
	}
	return Claim{}, ErrExhausted
}

// held returns a claim on the address holder already leases in role, if any.
func (a *Allocator) held(ctx context.Context, holder, role string, now time.Time) (Claim, bool, error) {
	if holder == "" {
		return Claim{}, false, nil
	}
	b, err := a.st.Get(ctx, holderPrefix+holder)
	if errors.Is(err, store.ErrNotFound) {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, err
	}
	ip, err := netip.ParseAddr(string(b))
	if err != nil || !a.network.Contains(ip) {
		return Claim{}, false, nil
	}
	l, v, err := a.read(ctx, ip)
	if errors.Is(err, store.ErrNotFound) {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, err
	}
	// The pointer is only a hint: the lease itself must name this holder.
	if l.Holder != holder || l.Role != role || !l.NotAfter.After(now) {
		return Claim{}, false, nil
	}
	return Claim{IP: ip, version: v}, true, nil
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
		return Lease{}, "", fmt.Errorf("issuer: lease record for %s is corrupt: %w", ip, err)
	}
	return l, v, nil
}

func (a *Allocator) swap(ctx context.Context, old store.Version, l Lease) (store.Version, error) {
	b, err := json.Marshal(l)
	if err != nil {
		return "", err
	}
	return a.st.Swap(ctx, leaseKey(l.IP), old, b)
}

// Record persists a signed certificate's lease over its claim.
func (a *Allocator) Record(ctx context.Context, c Claim, l Lease) error {
	v, err := a.swap(ctx, c.version, l)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %s; retry", ErrClaimLost, c.IP)
	}
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.leases[l.IP] = entry{lease: l, version: v}
	a.mu.Unlock()
	return nil
}

// Forget gives up a claim whose certificate was not issued. The claim record
// stays in the store until it expires (claimHold): deleting it could delete a
// record another coordinator wrote since.
func (a *Allocator) Forget(c Claim) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.leases[c.IP]; ok && e.version == c.version && e.lease.Fingerprint == "" {
		delete(a.leases, c.IP)
	}
}

// Release ends the lease of the certificate with this fingerprint at ip if
// releaseHash matches. Releasing an unknown lease is not an error: DEL is
// idempotent. An invalid ip looks the lease up in memory (older agents).
func (a *Allocator) Release(ctx context.Context, ip netip.Addr, fingerprint, releaseHash string) error {
	var l Lease
	if ip.IsValid() {
		got, _, err := a.read(ctx, ip)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		l = got
	} else {
		a.mu.Lock()
		for _, e := range a.leases {
			if e.lease.Fingerprint == fingerprint {
				l = e.lease
			}
		}
		a.mu.Unlock()
	}
	if l.Fingerprint == "" || l.Fingerprint != fingerprint {
		return nil
	}
	if l.ReleaseHash == "" || l.ReleaseHash != releaseHash {
		return fmt.Errorf("issuer: release of %s refused: wrong release token", l.Name)
	}
	if err := a.st.Delete(ctx, leaseKey(l.IP)); err != nil {
		return err
	}
	if l.Holder != "" {
		if err := a.st.Delete(ctx, holderPrefix+l.Holder); err != nil {
			return err
		}
	}
	a.mu.Lock()
	delete(a.leases, l.IP)
	a.mu.Unlock()
	return nil
}

// Live returns the leases whose certificates have not expired, by IP, as far
// as this allocator knows (Refresh brings in other coordinators' leases).
func (a *Allocator) Live(now time.Time) []Lease {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Lease
	for _, e := range a.leases {
		if e.lease.Fingerprint != "" && e.lease.NotAfter.After(now) {
			out = append(out, e.lease)
		}
	}
	slices.SortFunc(out, func(x, y Lease) int { return x.IP.Compare(y.IP) })
	return out
}
