package coordinator

import (
	"context"
	"crypto/ecdh"
	"crypto/subtle"
	"fmt"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/ca/shamir"
)

// Unlock opens the sealed state with the operator's unlock key.
func (c *Coordinator) Unlock(ctx context.Context, req *api.UnlockRequest) (*api.Status, error) {
	kek, err := seal.ParseUnlockKey(req.UnlockKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrBadInput, err)
	}
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	defer c.end()
	if s := c.view().state; s != api.StateLocked {
		return nil, fmt.Errorf("%w: coordinator is %s, not locked", api.ErrConflict, s)
	}
	if err := c.openLocked(ctx, kek); err != nil {
		return nil, err
	}
	return c.status(c.view(), ""), nil
}

// RotateUnlockKey re-seals the local state under a new unlock key, authorised by
// the current one. The rewrap is one atomic file replacement.
func (c *Coordinator) RotateUnlockKey(ctx context.Context, req *api.UnlockRequest) (*api.UnlockKeyResponse, error) {
	cur, err := seal.ParseUnlockKey(req.UnlockKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrBadInput, err)
	}
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	defer c.end()
	if c.cfg.SealingKey != nil {
		return nil, fmt.Errorf("%w: this coordinator seals with its TEE's key, not an unlock key", api.ErrConflict)
	}
	if c.kek == nil || subtle.ConstantTimeCompare([]byte(cur.ID()), []byte(c.kek.ID())) != 1 {
		return nil, fmt.Errorf("%w: that is not the current unlock key", api.ErrRefused)
	}
	next, nextText, err := seal.NewUnlockKey()
	if err != nil {
		return nil, err
	}
	if err := seal.RotateFile(c.cfg.StateDir, sealedName, cur, next); err != nil {
		return nil, err
	}
	c.kek = next
	c.log.Info("unlock key rotated", "kek", next.ID())
	return &api.UnlockKeyResponse{UnlockKey: nextText}, nil
}

// RecoveryKey returns this process's X25519 key for receiving a seed.
func (c *Coordinator) RecoveryKey(context.Context) (*api.RecoveryKey, error) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	if c.recoveryKey == nil {
		k, err := seal.NewX25519()
		if err != nil {
			return nil, err
		}
		c.recoveryKey = k
	}
	return &api.RecoveryKey{PublicKey: c.recoveryKey.PublicKey().Bytes()}, nil
}

// addShare checks one sealed share of the split seed against the
// commitments in the store and keeps it. Until it has the threshold it
// answers how many more it needs (resp); then it joins them (joined). The
// shares live in this process only, and are dropped once joined.
func (c *Coordinator) addShare(ctx context.Context, rk *ecdh.PrivateKey, sealed []byte) (resp *api.ManifestResponse, joined []byte, err error) {
	share, err := seal.OpenWith(rk, seal.RecoveryInfo, sealed)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", api.ErrBadInput, err)
	}
	pub, err := c.sharing(ctx)
	if err != nil {
		return nil, nil, err
	}
	id, err := shamir.Check(share, pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", api.ErrRefused, err)
	}
	c.keyMu.Lock()
	if c.shares == nil {
		c.shares = map[uint64][]byte{}
	}
	c.shares[id] = share
	var all [][]byte
	for _, s := range c.shares {
		all = append(all, s)
	}
	if len(all) >= pub.Threshold {
		c.shares = nil
	}
	c.keyMu.Unlock()
	if need := pub.Threshold - len(all); need > 0 {
		c.log.Warn("seed share received for recovery", "share", id, "have", len(all), "need", pub.Threshold)
		return &api.ManifestResponse{Status: c.status(c.view(), ""), SharesNeeded: need}, nil, nil
	}
	joined, err = shamir.Join(all, pub)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", api.ErrRefused, err)
	}
	return nil, joined, nil
}

// Recover takes the seed (from a seed share, via meshctl recover) and continues the
// mesh in the store: same CA, same history. The seed must verify the store's
// history, so a wrong share changes nothing.
func (c *Coordinator) Recover(ctx context.Context, req *api.RecoverRequest) (*api.ManifestResponse, error) {
	if err := recoverable(c.view().state, req.Force); err != nil {
		return nil, err
	}
	c.keyMu.Lock()
	rk := c.recoveryKey
	c.keyMu.Unlock()
	if rk == nil {
		return nil, fmt.Errorf("%w: fetch the recovery key first", api.ErrBadInput)
	}
	if err := c.storeIsOurMesh(ctx); err != nil {
		return nil, err
	}
	if !req.Force {
		// A seed share is for when every coordinator is gone: a ready peer
		// would recover this coordinator by itself, without a second, divergent
		// copy of the mesh's secrets entering from outside. Asked before the
		// transition lock: a peer that never answers holds only this call.
		if url := c.peers.ReadyPeer(ctx, c.st); url != "" {
			return nil, fmt.Errorf("%w: peer %s is ready and will recover this coordinator; use --force to recover from the share anyway", api.ErrConflict, url)
		}
	}
	var raw []byte
	switch {
	case len(req.Share) > 0 && len(req.Seed) > 0:
		return nil, fmt.Errorf("%w: send a seed or a share, not both", api.ErrBadInput)
	case len(req.Share) > 0:
		resp, joined, err := c.addShare(ctx, rk, req.Share)
		if err != nil || resp != nil {
			return resp, err
		}
		raw = joined
	default:
		var err error
		if raw, err = seal.OpenWith(rk, seal.RecoveryInfo, req.Seed); err != nil {
			return nil, fmt.Errorf("%w: %v", api.ErrBadInput, err)
		}
	}
	seed, err := keys.SeedFrom(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrBadInput, err)
	}
	if _, err := history.Load(ctx, c.st, seed, history.Floor{}); err != nil {
		return nil, fmt.Errorf("%w: this seed does not verify the store's history: %v", api.ErrRefused, err)
	}
	if err := c.begin(ctx); err != nil {
		return nil, err
	}
	defer c.end()
	prev := c.view().state
	if err := recoverable(prev, req.Force); err != nil {
		return nil, err // changed meanwhile
	}
	if prev == api.StateLocked {
		c.log.Warn("replacing sealed state that could not be unlocked (recover --force)")
	}
	kek, unlockText, err := c.newKEK()
	if err != nil {
		return nil, err
	}
	c.kek = kek
	c.update(func(v *view) { v.seed = &seed })
	if err := c.persistLocked(); err != nil {
		c.kek = nil
		c.update(func(v *view) { v.seed = nil })
		return nil, err
	}
	if err := c.adoptLocked(ctx, seed, history.Floor{}); err != nil {
		return nil, err
	}
	v := c.view()
	c.log.Warn("mesh recovered from a seed share", "from", prev, "generation", v.hist.Generation())
	return &api.ManifestResponse{Status: c.status(v, ""), UnlockKey: unlockText}, nil
}

// recoverable says whether a coordinator in state may take a seed share.
func recoverable(state string, force bool) error {
	switch {
	case state == api.StateRecovering:
	case state == api.StateLocked && force:
	case state == api.StateLocked:
		return fmt.Errorf("%w: this coordinator has sealed state; unlock it, or recover with --force to replace it", api.ErrConflict)
	default:
		return fmt.Errorf("%w: coordinator is %s; nothing to recover", api.ErrConflict, state)
	}
	return nil
}
