package coordinator

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

// Proposals collect the owners' signatures of a manifest update where the
// current manifest's updateThreshold needs several. A proposal is an
// unsigned object in the store named by the update's digest (parent and
// manifest hash), so a changed manifest is another proposal, and
// approvals are signatures of that digest: the untrusted store can drop
// approvals, never move one to other content.

// proposal is the store's record of one.
type proposal struct {
	Manifest  []byte             `json:"manifest"` // canonical
	Parent    string             `json:"parent"`
	Unrevoke  []string           `json:"unrevoke,omitempty"`
	Approvals []history.Approval `json:"approvals"`
}

func proposalKey(id string) string { return "proposal-" + id }

// Propose records one owner's signature of an update and applies the update
// once enough owners signed it.
func (c *Coordinator) Propose(ctx context.Context, req *api.ProposalRequest) (*api.ProposalResponse, error) {
	m, err := manifest.Parse(req.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrBadInput, err)
	}
	v := c.view()
	if !v.serving() {
		return nil, fmt.Errorf("%w: %s: %s", api.ErrNotReady, v.state, v.msg)
	}
	if req.Parent != v.hist.Head {
		return nil, fmt.Errorf("%w: the proposal names %s; the head is %s: propose again on it", api.ErrStaleParent, req.Parent, v.hist.Head)
	}
	cur := v.hist.Manifest
	if cur.Immutable() {
		return nil, fmt.Errorf("%w: %v", api.ErrRefused, history.ErrFinal)
	}
	digest := history.UpdateDigest(req.Parent, m.Hash())
	id := hex.EncodeToString(digest)
	o, ok := cur.Owner(req.SignerKey)
	if !ok || len(req.SignerKey) != ed25519.PublicKeySize || !ed25519.Verify(req.SignerKey, digest, req.Signature) {
		return nil, fmt.Errorf("%w: not signed by an owner of the current manifest, for this manifest and parent", api.ErrRefused)
	}
	p, err := c.addApproval(ctx, id, proposal{Manifest: m.Canonical(), Parent: req.Parent, Unrevoke: req.Unrevoke},
		history.Approval{SignerKey: req.SignerKey, Signature: req.Signature})
	if err != nil {
		return nil, err
	}
	resp := c.proposalStatus(id, p, cur)
	c.log.Info("manifest proposal signed", "proposal", id, "by", o.Name, "approvedBy", resp.ApprovedBy, "needed", resp.Needed)
	if resp.Needed > 0 {
		return resp, nil
	}
	valid := c.validApprovals(id, p, cur)
	applied, err := c.SetManifest(ctx, &api.ManifestRequest{Manifest: p.Manifest, Parent: p.Parent,
		SignerKey: valid[0].SignerKey, Signature: valid[0].Signature, Approvals: toAPI(valid[1:]), Unrevoke: p.Unrevoke})
	if err != nil {
		return nil, err
	}
	if err := c.st.Delete(ctx, proposalKey(id)); err != nil {
		c.log.Warn("removing an applied proposal", "proposal", id, "err", err)
	}
	resp.Applied = applied
	return resp, nil
}

// Proposal shows proposal id: its manifest and who signed it.
func (c *Coordinator) Proposal(ctx context.Context, id string) (*api.ProposalResponse, error) {
	v := c.view()
	if v.hist == nil {
		return nil, fmt.Errorf("%w: %s", api.ErrNotReady, v.state)
	}
	b, err := c.st.Get(ctx, proposalKey(id))
	if errors.Is(err, store.ErrNotFound) || (err == nil && !validProposal(id, b)) {
		return nil, fmt.Errorf("%w: no proposal %q (applied, or never made)", api.ErrBadInput, id)
	}
	if err != nil {
		return nil, err
	}
	var p proposal
	json.Unmarshal(b, &p) // validProposal decoded it
	return c.proposalStatus(id, p, v.hist.Manifest), nil
}

// addApproval adds a to proposal id (made from fresh if the store has
// none, or one that does not match its name), by compare-and-swap.
func (c *Coordinator) addApproval(ctx context.Context, id string, fresh proposal, a history.Approval) (proposal, error) {
	for range 32 {
		b, ver, err := c.st.GetVersion(ctx, proposalKey(id))
		p := fresh
		switch {
		case errors.Is(err, store.ErrNotFound):
			ver = ""
		case err != nil:
			return proposal{}, err
		case validProposal(id, b):
			json.Unmarshal(b, &p)
		}
		if !slices.ContainsFunc(p.Approvals, func(x history.Approval) bool { return string(x.SignerKey) == string(a.SignerKey) }) {
			p.Approvals = append(p.Approvals, a)
		}
		for _, u := range fresh.Unrevoke {
			if !slices.Contains(p.Unrevoke, u) {
				p.Unrevoke = append(p.Unrevoke, u)
			}
		}
		nb, _ := json.Marshal(p)
		if _, err := c.st.Swap(ctx, proposalKey(id), ver, nb); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return proposal{}, err
		}
		return p, nil
	}
	return proposal{}, fmt.Errorf("proposal %s: the record kept changing", id)
}

// validProposal reports whether b is a proposal whose content is the
// update its name is the digest of.
func validProposal(id string, b []byte) bool {
	var p proposal
	if json.Unmarshal(b, &p) != nil {
		return false
	}
	m, err := manifest.ParseJSON(p.Manifest)
	return err == nil && history.UpdateDigestHex(p.Parent, m.Hash()) == id
}

// validApprovals are p's signatures that verify, by distinct owners of cur.
func (c *Coordinator) validApprovals(id string, p proposal, cur *manifest.Manifest) []history.Approval {
	digest, _ := hex.DecodeString(id)
	var out []history.Approval
	var seen []string
	for _, a := range p.Approvals {
		o, ok := cur.Owner(a.SignerKey)
		if !ok || slices.Contains(seen, o.Name) || len(a.SignerKey) != ed25519.PublicKeySize || !ed25519.Verify(a.SignerKey, digest, a.Signature) {
			continue
		}
		seen = append(seen, o.Name)
		out = append(out, a)
	}
	return out
}

func (c *Coordinator) proposalStatus(id string, p proposal, cur *manifest.Manifest) *api.ProposalResponse {
	m, _ := manifest.ParseJSON(p.Manifest)
	resp := &api.ProposalResponse{ID: id, Parent: p.Parent, Manifest: p.Manifest, ApprovedBy: []string{}}
	if m != nil {
		resp.Hash = m.Hash()
	}
	for _, a := range c.validApprovals(id, p, cur) {
		o, _ := cur.Owner(a.SignerKey)
		resp.ApprovedBy = append(resp.ApprovedBy, o.Name)
	}
	resp.Needed = max(0, cur.UpdateThresholdOrOne()-len(resp.ApprovedBy))
	return resp
}

func toAPI(as []history.Approval) []api.Approval {
	out := make([]api.Approval, len(as))
	for i, a := range as {
		out[i] = api.Approval{SignerKey: a.SignerKey, Signature: a.Signature}
	}
	return out
}
