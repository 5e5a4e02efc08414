package issuer

import (
	"context"
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

// leasePrefix names lease records: one per lease, so an enrolment writes one
// small record whatever the size of the mesh.
const leasePrefix = "lease-"

func leaseKey(ip netip.Addr) string {
	return leasePrefix + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
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
	// Workload is what the requester said it is (pod namespace/name); shown in
	// status, never used for identity.
	Workload string `json:"workload,omitempty"`
	// ReleaseHash is the SHA-256 of the secret the holder must show to release.
	ReleaseHash string `json:"releaseHash,omitempty"`
}

// Allocator hands out overlay IPs from the manifest's network, skipping the
// addresses the manifest fixes for lighthouses, and persists its leases.
type Allocator struct {
	mu       sync.Mutex
	st       store.Store
	network  netip.Prefix
	reserved map[netip.Addr]bool
	leases   map[netip.Addr]Lease
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
	a := &Allocator{st: st, network: m.Prefix(), reserved: map[netip.Addr]bool{}, leases: map[netip.Addr]Lease{}}
	for _, l := range m.Lighthouses {
		a.reserved[netip.MustParseAddr(l.OverlayIP)] = true
	}
	recs, err := st.List(context.Background(), leasePrefix)
	if err != nil {
		return nil, err
	}
	for k, b := range recs {
		var l Lease
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, fmt.Errorf("issuer: lease record %s is corrupt: %w", k, err)
		}
		a.leases[l.IP] = l
	}
	return a, nil
}

// Allocate reserves the lowest free address for a certificate being issued; commit
// it with Record once signed. fixed, when valid, asks for that address (a
// lighthouse's) instead.
func (a *Allocator) Allocate(fixed netip.Addr, now time.Time) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if fixed.IsValid() {
		return fixed, nil
	}
	last := manifest.LastAddr(a.network)
	for ip := a.network.Addr().Next(); a.network.Contains(ip); ip = ip.Next() {
		if ip.Is4() && ip == last {
			break
		}
		if a.reserved[ip] {
			continue
		}
		if l, ok := a.leases[ip]; ok && l.NotAfter.After(now) {
			continue
		}
		// Hold the address until Record or Forget, so concurrent enrolments
		// cannot both pick it.
		a.leases[ip] = Lease{IP: ip, NotAfter: now.Add(time.Minute)}
		return ip, nil
	}
	return netip.Addr{}, ErrExhausted
}

// Record persists a signed certificate's lease.
func (a *Allocator) Record(l Lease) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if err := a.st.Put(context.Background(), leaseKey(l.IP), b); err != nil {
		return err
	}
	a.leases[l.IP] = l
	return nil
}

// Forget drops a reservation whose certificate was never issued.
func (a *Allocator) Forget(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l, ok := a.leases[ip]; ok && l.Fingerprint == "" {
		delete(a.leases, ip)
	}
}

// Release ends the lease of the certificate with this fingerprint if releaseHash
// matches. Releasing an unknown lease is not an error: DEL is idempotent.
func (a *Allocator) Release(fingerprint, releaseHash string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip, l := range a.leases {
		if l.Fingerprint != fingerprint {
			continue
		}
		if l.ReleaseHash == "" || l.ReleaseHash != releaseHash {
			return fmt.Errorf("issuer: release of %s refused: wrong release token", l.Name)
		}
		if err := a.st.Delete(context.Background(), leaseKey(ip)); err != nil {
			return err
		}
		delete(a.leases, ip)
		return nil
	}
	return nil
}

// Live returns the leases whose certificates have not expired, by IP.
func (a *Allocator) Live(now time.Time) []Lease {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Lease
	for _, l := range a.leases {
		if l.Fingerprint != "" && l.NotAfter.After(now) {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(x, y Lease) int { return x.IP.Compare(y.IP) })
	return out
}
