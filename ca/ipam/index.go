package ipam

import "net/netip"

// put records e as ip's entry, keeping the indexes. Called with mu held.
func (a *Allocator) put(ip netip.Addr, e entry) {
	a.unindex(ip)
	a.leases[ip] = e
	a.index(ip, e)
}

// drop forgets ip's entry. Called with mu held.
func (a *Allocator) drop(ip netip.Addr) {
	a.unindex(ip)
	delete(a.leases, ip)
}

// replace makes leases the whole copy and indexes it again. Called with mu
// held (or before the allocator is shared).
func (a *Allocator) replace(leases map[netip.Addr]entry) {
	a.leases = leases
	a.byHolder = map[string]map[netip.Addr]struct{}{}
	a.superseding = map[netip.Addr]struct{}{}
	for ip, e := range leases {
		a.index(ip, e)
	}
}

func (a *Allocator) index(ip netip.Addr, e entry) {
	if h := e.lease.Holder; h != "" {
		set := a.byHolder[h]
		if set == nil {
			set = map[netip.Addr]struct{}{}
			a.byHolder[h] = set
		}
		set[ip] = struct{}{}
	}
	if e.valid && len(e.lease.Superseded) > 0 {
		a.superseding[ip] = struct{}{}
	}
}

func (a *Allocator) unindex(ip netip.Addr) {
	old, ok := a.leases[ip]
	if !ok {
		return
	}
	if h := old.lease.Holder; h != "" {
		if set := a.byHolder[h]; set != nil {
			delete(set, ip)
			if len(set) == 0 {
				delete(a.byHolder, h)
			}
		}
	}
	delete(a.superseding, ip)
}
