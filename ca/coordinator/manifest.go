package coordinator

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/issuer"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/manifest"
)

// checkSimulatedCoordinators refuses a manifest whose coordinator roles accept
// the simulated TEE on a coordinator with a real one, unless allowed: such a
// role would let anyone who runs the simulated TEE receive the seed.
func (c *Coordinator) checkSimulatedCoordinators(m *manifest.Manifest) error {
	if m.SimulatedCoordinators() && c.realTEE() && !c.cfg.AllowSimulatedCoordinators {
		return fmt.Errorf("%w: a coordinator role accepts the simulated TEE, which anyone can run, and this coordinator attests with %s: it would hand such a peer the seed (for development, start it with --allow-simulated-coordinators)", api.ErrBadInput, c.cfg.Issuer.Platform())
	}
	return nil
}

// SetManifest creates the mesh (no manifest yet) or applies an owner-signed update.
func (c *Coordinator) SetManifest(ctx context.Context, req *api.ManifestRequest) (*api.ManifestResponse, error) {
	m, err := manifest.Parse(req.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrBadInput, err)
	}
	if err := c.checkSimulatedCoordinators(m); err != nil {
		return nil, err
	}
	u := history.Update{Parent: req.Parent, SignerKey: req.SignerKey, Signature: req.Signature}
	for _, a := range req.Approvals {
		u.Approvals = append(u.Approvals, history.Approval{SignerKey: a.SignerKey, Signature: a.Signature})
	}
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	defer c.end()
	v := c.view()
	switch {
	case v.state == api.StateWaiting:
		return c.createLocked(ctx, m, u)
	case !v.serving():
		return nil, fmt.Errorf("%w: %s: %s", api.ErrNotReady, v.state, v.msg)
	}
	// Under the transition lock: no update can come between this check
	// and the write.
	if err := api.CheckHead(ctx, v.hist.Head); err != nil {
		return nil, err
	}
	if resp, err := c.replayed(ctx, v, m, u); resp != nil || err != nil {
		return resp, err
	}
	if req.Parent == "" {
		return nil, fmt.Errorf("%w: the mesh exists (generation %d, head %s); an update names the head it replaces", api.ErrConflict, v.hist.Generation(), v.hist.Head)
	}
	if dropped := droppedRevocations(v.hist.Manifest, m, req.Unrevoke); len(dropped) > 0 {
		return nil, fmt.Errorf("%w: this manifest drops %d revocation(s) of the current one: %s; keep them under revoked (meshctl manifest get shows them), or lift each with --unrevoke FINGERPRINT",
			api.ErrRevocationDropped, len(dropped), strings.Join(dropped, ", "))
	}
	if m.Hash() == v.hist.Manifest.Hash() {
		// The owner's file again: nothing to write, no new generation.
		return &api.ManifestResponse{Status: c.status(v, ""), Unchanged: true}, nil
	}
	if !slices.Equal(m.Prefixes(), v.hist.Manifest.Prefixes()) {
		return nil, fmt.Errorf("%w: networks cannot change (%v → %v): issued certificates carry addresses of them", api.ErrBadInput, v.hist.Manifest.Networks, m.Networks)
	}
	ca := v.ca
	var h *history.State
	if g := m.CAGen(); g != v.hist.Manifest.CAGen() {
		// A rotation's first step: the next generation's CA, from the
		// seed (recovery needs nothing more), made here and kept in the
		// history like the first one.
		if ca, err = issuer.NewCA(v.seed.CAKey(g), caName(m), m.Prefixes(), caLifetime, c.now()); err != nil {
			return nil, err
		}
		h, err = history.AppendWithCA(ctx, c.st, *v.seed, v.hist, m, u, ca.PEM(), c.now())
	} else {
		h, err = history.Append(ctx, c.st, *v.seed, v.hist, m, u, c.now())
	}
	if err != nil {
		return nil, historyErr(err)
	}
	v.alloc.SetReserved(m)
	c.update(func(v *view) { v.hist, v.ca = h, ca })
	if err := c.persistLocked(); err != nil {
		c.setState(api.StateFailed, "could not seal the new floor: "+err.Error())
		return nil, err
	}
	c.log.Info("manifest updated", "generation", h.Generation(), "head", h.Head, "manifest", m.Hash(), "signer", h.Chain[len(h.Chain)-1].Signer)
	return &api.ManifestResponse{Status: c.status(c.view(), "")}, nil
}

// caName names a CA certificate: the manifest it was made under and its
// generation.
func caName(m *manifest.Manifest) string {
	return fmt.Sprintf("sealmesh %s generation %d", m.Hash()[:12], m.CAGen())
}

func historyErr(err error) error {
	switch {
	case errors.Is(err, history.ErrStale):
		return fmt.Errorf("%w: %v", api.ErrStaleParent, err)
	case errors.Is(err, history.ErrUnauthorized):
		return fmt.Errorf("%w: %v", api.ErrRefused, err)
	case errors.Is(err, history.ErrInvalid):
		return fmt.Errorf("%w: %v", api.ErrBadInput, err)
	}
	return err
}

func (c *Coordinator) createLocked(ctx context.Context, m *manifest.Manifest, u history.Update) (*api.ManifestResponse, error) {
	if u.Parent != "" {
		return nil, fmt.Errorf("%w: there is no mesh yet; the first manifest has no parent", api.ErrConflict)
	}
	if want := c.view().mesh; want != "" {
		// Its store holds no mesh, but it was started to serve one: a
		// new mesh here would be another one (a store emptied, or the
		// wrong store).
		return nil, fmt.Errorf("%w: this coordinator serves mesh %s (--mesh-id) and its store holds no mesh: it creates none", api.ErrConflict, want)
	}
	if len(c.cfg.Owners) > 0 && !slices.ContainsFunc(c.cfg.Owners, func(k ed25519.PublicKey) bool { return k.Equal(ed25519.PublicKey(u.SignerKey)) }) {
		return nil, fmt.Errorf("%w: this coordinator creates the mesh only with a manifest signed by one of the %d owner keys it was deployed with (--owner-key)", api.ErrRefused, len(c.cfg.Owners))
	}
	seed, err := keys.NewSeed()
	if err != nil {
		return nil, err
	}
	kek, unlockText, err := c.newKEK()
	if err != nil {
		return nil, err
	}
	ca, err := issuer.NewCA(seed.CAKey(m.CAGen()), caName(m), m.Prefixes(), caLifetime, c.now())
	if err != nil {
		return nil, err
	}
	shares, sharing, err := makeShares(m, seed)
	if err != nil {
		return nil, err
	}
	sharesRaw, err := encodeShares(shares, sharing)
	if err != nil {
		return nil, err
	}
	// Seal the seed before the store names the mesh, so a crash in between
	// cannot leave a mesh whose seed nobody has.
	c.kek = kek
	c.update(func(v *view) { v.seed, v.hist = &seed, nil })
	forget := func() {
		c.kek = nil
		c.update(func(v *view) { v.seed = nil })
	}
	if err := c.persistLocked(); err != nil {
		forget()
		return nil, err
	}
	h, err := history.Create(ctx, c.st, seed, m, u, ca.PEM(), sharesRaw, c.now())
	if err != nil {
		os.Remove(filepath.Join(c.cfg.StateDir, sealedName))
		forget()
		return nil, historyErr(err)
	}
	resp := &api.ManifestResponse{UnlockKey: unlockText, SeedShares: shares}
	c.update(func(v *view) { v.mesh = h.MeshID() }) // its own: not trusted on first use
	if err := c.adoptLocked(ctx, seed, history.Floor{}); err != nil {
		return nil, err
	}
	c.log.Info("mesh created", "mesh", h.MeshID(), "head", h.Head, "sealedWith", kek.ID(), "seedShares", len(resp.SeedShares))
	resp.Status = c.status(c.view(), "")
	return resp, nil
}

// Manifest returns the current manifest.
func (c *Coordinator) Manifest(context.Context) (*api.ManifestInfo, error) {
	v := c.view()
	if v.hist == nil {
		return nil, fmt.Errorf("%w: %s", api.ErrNotReady, v.state)
	}
	return &api.ManifestInfo{Generation: v.hist.Generation(), Head: v.hist.Head, Hash: v.hist.Manifest.Hash(), Manifest: v.hist.Manifest.Canonical(), CA: string(v.hist.CAPEM)}, nil
}

// History returns the verified history with each manifest.
func (c *Coordinator) History(ctx context.Context) ([]api.HistoryEntry, error) {
	h := c.view().hist
	if h == nil {
		return nil, fmt.Errorf("%w: no verified history", api.ErrNotReady)
	}
	out := make([]api.HistoryEntry, 0, len(h.Chain))
	for i, t := range h.Chain {
		raw, err := history.ManifestAt(ctx, c.st, t)
		if err != nil {
			return nil, err
		}
		head := h.Head
		if i+1 < len(h.Chain) {
			head = h.Chain[i+1].Prev
		}
		out = append(out, api.HistoryEntry{Generation: t.Generation, Head: head, Time: t.Time, Signer: t.Signer, Hash: t.Manifest, Manifest: raw, Transition: h.Raw[i]})
	}
	return out, nil
}

// droppedRevocations lists the revocations of cur that next lacks and
// unrevoke does not name ("name fingerprint").
func droppedRevocations(cur, next *manifest.Manifest, unrevoke []string) []string {
	var out []string
	for _, r := range cur.Revoked {
		kept := slices.ContainsFunc(next.Revoked, func(n manifest.Revoked) bool { return n.Fingerprint == r.Fingerprint && n.Holder == r.Holder })
		if kept || slices.Contains(unrevoke, r.Fingerprint) {
			continue
		}
		name := r.Fingerprint
		if r.Name != "" {
			name = r.Name + " " + r.Fingerprint
		}
		out = append(out, name)
	}
	return out
}
