package coordinator

import (
	"context"
	"fmt"
	"slices"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/ca/cluster"
	"github.com/sealmesh/sealmesh/manifest"
)

// maxStatusHosts is api.MaxStatusHosts; tests lower it.
var maxStatusHosts = api.MaxStatusHosts

// Status reports the mesh as the coordinator sees it, with its hosts.
func (c *Coordinator) Status() *api.Status { return c.status(c.view(), "") }

// PublicStatus is Status for anyone who asks (GET /v1/status): the host
// count, not the hosts. Their names, addresses, fingerprints and pods map
// the mesh for an attacker; they are for owners and coordinators (Hosts).
func (c *Coordinator) PublicStatus(context.Context) (*api.Status, error) {
	s := c.Status()
	s.Hosts, s.HostsWithheld = nil, true
	return s, nil
}

// Hosts is Status with its host list (all, or those req.Host names: a
// certificate fingerprint or name, an overlay IP or a pod), for a requester
// that attested in the TLS handshake as a coordinator role of the current
// manifest, or that shows an owner key of it (req.Proof).
func (c *Coordinator) Hosts(ctx context.Context, req *api.HostsRequest) (*api.Status, error) {
	v := c.view()
	if v.hist == nil {
		return nil, fmt.Errorf("%w: %s", api.ErrNotReady, v.state)
	}
	if err := c.mayListHosts(ctx, v.hist.Manifest, req.Proof); err != nil {
		return nil, err
	}
	return c.status(v, req.Host), nil
}

func (c *Coordinator) mayListHosts(ctx context.Context, m *manifest.Manifest, p *api.OwnerProof) error {
	if claims := atls.PeerClaims(ctx); claims != nil && p == nil {
		if claims.Platform == attest.PlatformSimulated && c.realTEE() && !c.cfg.AllowSimulatedCoordinators {
			return fmt.Errorf("%w: the host list is for owners and coordinators; the requester attested with the simulated TEE", api.ErrRefused)
		}
		if _, err := cluster.CoordinatorRole(m, claims); err != nil {
			return fmt.Errorf("%w: the host list is for owners and coordinators: %v", api.ErrRefused, err)
		}
		return nil
	}
	if err := p.Verify(api.PurposeHosts, c.now()); err != nil {
		return fmt.Errorf("%w: the host list is for owners and coordinators: %v", api.ErrRefused, err)
	}
	if !c.isOwner(m, p.SignerKey) {
		return fmt.Errorf("%w: the host list is for owners and coordinators: the signing key is not an owner of the current manifest", api.ErrRefused)
	}
	return nil
}

// status is v as api.Status, listing the live hosts that match names (all
// for "").
func (c *Coordinator) status(v *view, match string) *api.Status {
	s := &api.Status{Version: c.cfg.Version, State: v.state, Message: v.msg, Hosts: []api.Host{}, MeshID: v.mesh, MeshFirstUse: v.firstUse, FreshnessUnconfirmed: v.unconfirmed}
	if v.hist != nil {
		s.ManifestHash = v.hist.Manifest.Hash()
		s.AcceptsSimulated = v.hist.Manifest.AcceptsSimulated()
		s.Generation = v.hist.Generation()
		s.Head = v.hist.Head
	}
	if v.ca != nil {
		s.CAFingerprint = v.ca.Fingerprint()
	}
	if c.cfg.Members != nil {
		s.Members = c.cfg.Members()
	}
	if v.alloc == nil || !v.serving() {
		return s
	}
	live := v.alloc.Live(c.now())
	s.HostCount = len(live)
	m := v.hist.Manifest
	blocked := m.Blocklist()
	for _, l := range live {
		h := api.Host{
			Name: l.Name, Role: l.Role, IP: l.IP.String(), Groups: l.Groups,
			NotAfter: l.NotAfter, Fingerprint: l.Fingerprint, Workload: l.Workload, Holder: l.Holder,
			Revoked: m.RevokedHolder(l.Holder) || slices.Contains(blocked, l.Fingerprint),
		}
		if match != "" && !h.Named(match) {
			continue
		}
		if len(s.Hosts) == maxStatusHosts {
			break
		}
		s.Hosts = append(s.Hosts, h)
	}
	return s
}

// Attest answers a third-party verifier (GET /.well-known/sealmesh/attest):
// evidence of this coordinator's TEE over the verifier's nonce, the TLS key
// it serves with, and the mesh, head, generation and CA it serves
// (api.AttestReportData). Every call makes a TEE report; the API's rate per
// source bounds them.
func (c *Coordinator) Attest(ctx context.Context, nonce []byte) (*api.AttestResponse, error) {
	if c.cfg.Issuer == nil || c.cfg.TLSPublicKey == nil {
		return nil, fmt.Errorf("%w: this coordinator runs without a TEE (no --tee): it has no evidence to give", api.ErrNotReady)
	}
	v := c.view()
	if !v.serving() {
		return nil, fmt.Errorf("%w: %s", api.ErrNotReady, v.state)
	}
	resp := &api.AttestResponse{TLSPublicKey: c.cfg.TLSPublicKey, MeshID: v.mesh, Head: v.hist.Head,
		Generation: v.hist.Generation(), CA: string(v.hist.CAPEM)}
	ev, err := c.cfg.Issuer.Evidence(api.AttestReportData(nonce, resp))
	if err != nil {
		return nil, fmt.Errorf("attest: %s evidence: %w", c.cfg.Issuer.Platform(), err)
	}
	resp.Evidence = api.Evidence{Platform: ev.Platform, Data: ev.Data}
	return resp, nil
}

// ConfirmFresh takes an owner's statement that this coordinator's head is
// the newest it knows (api.PurposeFresh over that head): a coordinator
// restarted from its sealed state with no peer to confirm it serves again,
// or stops reporting its freshness unconfirmed.
func (c *Coordinator) ConfirmFresh(ctx context.Context, p *api.OwnerProof) (*api.Status, error) {
	v := c.view()
	if v.hist == nil {
		return nil, fmt.Errorf("%w: %s", api.ErrNotReady, v.state)
	}
	if err := p.Verify(api.PurposeFresh(v.hist.Head), c.now()); err != nil {
		return nil, fmt.Errorf("%w: %v (the statement names the head it confirms; this coordinator is at %s)", api.ErrRefused, err, v.hist.Head)
	}
	if !c.isOwner(v.hist.Manifest, p.SignerKey) {
		return nil, fmt.Errorf("%w: the signing key is not an owner of the current manifest", api.ErrRefused)
	}
	c.settle(ctx, v, func() {
		c.update(func(v *view) { v.unconfirmed = false })
		if c.view().state == api.StateUnconfirmed {
			c.setState(api.StateReady, "")
		}
		c.log.Info("freshness confirmed by an owner", "generation", v.hist.Generation(), "head", v.hist.Head)
	})
	return c.status(c.view(), ""), nil
}
