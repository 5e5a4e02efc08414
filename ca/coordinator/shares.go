package coordinator

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/ca/shamir"
	"github.com/sealmesh/sealmesh/manifest"
)

// The seed shares made at creation are kept in the store, as an object the
// first transition names (history.Shares). They are encrypted to their
// owners, so the untrusted store may hold them; one it swaps only yields a
// seed that does not verify the history at recovery. Before, a lost answer
// to the first manifest lost the unlock key and the shares both, and the
// mesh stayed locked after its next restart.

// makeShares encrypts seed to each seed-share owner of m: the whole seed,
// or with a seedShareThreshold one share of a k-of-n split (package
// shamir), whose public part comes back to be kept with the shares.
func makeShares(m *manifest.Manifest, seed keys.Seed) ([]api.SeedShare, *api.SeedSharing, error) {
	parts := make([][]byte, len(m.SeedShareOwners))
	var sharing *api.SeedSharing
	if k := m.SeedShareThreshold; k >= 2 {
		split, pub, err := shamir.Split(seed[:], k, len(m.SeedShareOwners))
		if err != nil {
			return nil, nil, err
		}
		parts = split
		sharing = &api.SeedSharing{Threshold: pub.Threshold, Commitment: pub.Commitment, Wrapped: pub.Wrapped}
	} else {
		for i := range parts {
			parts[i] = seed[:]
		}
	}
	var out []api.SeedShare
	for i, o := range m.SeedShareOwners {
		pub, err := base64.StdEncoding.DecodeString(o.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("seed share for %s: %w", o.Name, err)
		}
		share, err := seal.SealTo(pub, seal.SeedShareInfo, parts[i])
		if err != nil {
			return nil, nil, fmt.Errorf("seed share for %s: %w", o.Name, err)
		}
		out = append(out, api.SeedShare{Owner: o.Name, Share: share})
	}
	return out, sharing, nil
}

func encodeShares(shares []api.SeedShare, sharing *api.SeedSharing) ([]byte, error) {
	if len(shares) == 0 {
		return nil, nil
	}
	return json.Marshal(api.SeedSharesResponse{SeedShares: shares, Sharing: sharing})
}

// sharing is the public part of the mesh's split seed, from the store.
func (c *Coordinator) sharing(ctx context.Context) (shamir.Public, error) {
	raw, err := history.Shares(ctx, c.st)
	if err != nil {
		return shamir.Public{}, err
	}
	var r api.SeedSharesResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return shamir.Public{}, fmt.Errorf("the store's seed shares are not valid JSON: %w", err)
	}
	if r.Sharing == nil {
		return shamir.Public{}, fmt.Errorf("%w: this mesh's seed is not split (send the seed, not a share)", api.ErrBadInput)
	}
	return shamir.Public{Threshold: r.Sharing.Threshold, Commitment: r.Sharing.Commitment, Wrapped: r.Sharing.Wrapped}, nil
}

func decodeShares(raw []byte) ([]api.SeedShare, error) {
	if raw == nil {
		return nil, fmt.Errorf("%w: the mesh has no seed shares (its first manifest names no seed-share owners)", api.ErrConflict)
	}
	var r api.SeedSharesResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("the store's seed shares are not valid JSON: %w", err)
	}
	return r.SeedShares, nil
}

// SeedShares returns the seed shares kept in the store to an owner of the
// current manifest. A coordinator that cannot verify the history (locked,
// or recovering) reads the owners from the store's latest manifest
// unverified: the shares are encrypted to their owners and the store holds
// them anyway, so the check only keeps them from being handed to anyone
// who asks.
func (c *Coordinator) SeedShares(ctx context.Context, p *api.OwnerProof) (*api.SeedSharesResponse, error) {
	if err := p.Verify(api.PurposeSeedShares, c.now()); err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrRefused, err)
	}
	var m *manifest.Manifest
	if h := c.view().hist; h != nil {
		m = h.Manifest
	} else {
		var err error
		if m, _, _, err = history.Peek(ctx, c.st); err != nil {
			return nil, fmt.Errorf("%w: no manifest to check the owner against: %v", api.ErrNotReady, err)
		}
	}
	if !c.isOwner(m, p.SignerKey) {
		return nil, fmt.Errorf("%w: the signing key is not an owner of the current manifest", api.ErrRefused)
	}
	raw, err := history.Shares(ctx, c.st)
	if err != nil {
		return nil, fmt.Errorf("read the seed shares: %w", err)
	}
	shares, err := decodeShares(raw)
	if err != nil {
		return nil, err
	}
	return &api.SeedSharesResponse{SeedShares: shares}, nil
}

// isOwner reports whether key is an owner of m or one this coordinator was
// deployed with (--owner-key).
func (c *Coordinator) isOwner(m *manifest.Manifest, key []byte) bool {
	if _, ok := m.Owner(key); ok {
		return true
	}
	return slices.ContainsFunc(c.cfg.Owners, func(k ed25519.PublicKey) bool { return k.Equal(ed25519.PublicKey(key)) })
}

// replayed answers a manifest request that was applied already, so a
// client whose answer was lost (or that timed out and retried at another
// coordinator) may send it again: the signed request is its own idempotency
// key (Ed25519 signatures are deterministic, and a transition names its
// parent, so at most one transition matches). It returns nil if no
// transition of the history is that request. A replayed create carries the
// seed shares again, never the unlock key.
func (c *Coordinator) replayed(ctx context.Context, v *view, m *manifest.Manifest, u history.Update) (*api.ManifestResponse, error) {
	i := slices.IndexFunc(v.hist.Chain, func(t history.Transition) bool {
		return t.Prev == u.Parent && t.Manifest == m.Hash() && bytes.Equal(t.SignerKey, u.SignerKey) && bytes.Equal(t.Signature, u.Signature)
	})
	if i < 0 {
		return nil, nil
	}
	resp := &api.ManifestResponse{Status: c.status(v, ""), Replayed: true}
	if i == 0 {
		raw, err := history.GenesisShares(ctx, c.st, v.hist.Chain[0])
		if err != nil {
			return nil, fmt.Errorf("read the seed shares: %w", err)
		}
		if raw != nil {
			if resp.SeedShares, err = decodeShares(raw); err != nil {
				return nil, err
			}
		}
	}
	c.log.Info("manifest request replayed: already applied, nothing changed", "generation", v.hist.Chain[i].Generation, "head", v.hist.Head)
	return resp, nil
}
