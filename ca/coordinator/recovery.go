package coordinator

import (
	"context"
	"errors"
	"fmt"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/ca/cluster"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/seal"
)

// PeerKeys hands the seed to another coordinator (invariant A): only when the
// requester attested in this connection's handshake (its TLS client
// certificate, fresh for this coordinator's nonce) as a coordinator role of the
// current manifest. Nothing is sent otherwise. The seed is encrypted to the key
// the attested requester sent on that connection.
func (c *Coordinator) PeerKeys(ctx context.Context, req *api.PeerKeysRequest) (*api.PeerKeysResponse, error) {
	claims := atls.PeerClaims(ctx)
	if len(req.PublicKey) != 32 {
		return nil, fmt.Errorf("%w: publicKey is %d bytes, want a 32-byte X25519 key", api.ErrBadInput, len(req.PublicKey))
	}
	v := c.view()
	// An unconfirmed coordinator hands the seed too (the seed is the same
	// whatever the head), and says so: a peer that recovers from it is
	// unconfirmed as well. Else a cluster whose only holder of the seed
	// restarted could not come back.
	if !v.serving() && v.state != api.StateUnconfirmed {
		return nil, fmt.Errorf("%w: %s", api.ErrNotReady, v.state)
	}
	if claims == nil {
		c.log.Warn("peer key request refused", "err", "the requester did not attest in the TLS handshake")
		return nil, fmt.Errorf("%w: the requester did not attest in the TLS handshake (attested TLS with a client certificate)", api.ErrRefused)
	}
	if claims.Platform == attest.PlatformSimulated && c.realTEE() && !c.cfg.AllowSimulatedCoordinators {
		c.log.Warn("peer key request refused", "err", "the requester attested with the simulated TEE")
		return nil, fmt.Errorf("%w: the requester attested with the simulated TEE and this coordinator runs a real one (--allow-simulated-coordinators, for development)", api.ErrRefused)
	}
	role, err := cluster.CoordinatorRole(v.hist.Manifest, claims)
	if err != nil {
		c.log.Warn("peer key request refused", "err", err)
		return nil, fmt.Errorf("%w: %v", api.ErrRefused, err)
	}
	enc, err := seal.SealTo(req.PublicKey, seal.PeerSeedInfo, v.seed[:])
	if err != nil {
		return nil, err
	}
	c.log.Info("seed handed to an attested coordinator", "role", role, "measurement", claims.Measurement)
	return &api.PeerKeysResponse{Seed: enc, Generation: v.hist.Generation(), Head: v.hist.Head, Unconfirmed: v.unconfirmed}, nil
}

// tryPeers recovers a coordinator without secrets from a ready peer, if it
// has peers (static or from gossip) and a TEE to attest with.
func (c *Coordinator) tryPeers(ctx context.Context) {
	if c.view().state == api.StateWaiting {
		// Another coordinator may have created the mesh meanwhile.
		if _, _, err := c.st.Latest(ctx); err == nil && c.begin(ctx) == nil {
			if c.view().state == api.StateWaiting {
				c.setState(api.StateRecovering, "another coordinator created the mesh; recovering its seed from a peer (or meshctl recover)")
			}
			c.end()
		}
	}
	v := c.view()
	recovering := v.state == api.StateRecovering || v.state == api.StateLocked
	if urls := c.peers.URLs(v.seed); recovering && len(urls) > 0 && c.cfg.Issuer != nil {
		if err := c.RecoverFromPeers(ctx, urls); err != nil {
			c.log.Warn("peer recovery", "err", err)
		}
	}
}

// RecoverFromPeers takes the seed from the first of urls that serves it
// (cluster.Peers.Recover), while this coordinator is recovering or locked.
func (c *Coordinator) RecoverFromPeers(ctx context.Context, urls []string) error {
	if s := c.view().state; s != api.StateRecovering && s != api.StateLocked {
		return fmt.Errorf("%w: coordinator is %s, not recovering or locked", api.ErrConflict, s)
	}
	return c.peers.Recover(ctx, c.st, urls, func(id string) error { return c.ourMesh(ctx, id) }, c.takeSeed)
}

// storeIsOurMesh refuses a store that holds another mesh than the one this
// coordinator serves or was started for (--mesh-id), read without the seed
// (history.PeekAll): before any peer is asked for the seed, or a seed
// share taken, so that a store writer's self-consistent mesh of their own
// cannot lead a genuine replica to recover their seed. Unpinned, it says
// that the mesh will be trusted on first use.
func (c *Coordinator) storeIsOurMesh(ctx context.Context) error {
	p, err := history.PeekAll(ctx, c.st)
	if err != nil {
		return fmt.Errorf("read the store's mesh: %w", err)
	}
	return c.ourMesh(ctx, p.MeshID)
}

// ourMesh refuses the mesh got, read from the store unverified, if it is not
// the one this coordinator serves or was started for.
func (c *Coordinator) ourMesh(ctx context.Context, got string) error {
	want := c.view().mesh
	if want == "" || want == got {
		return nil
	}
	msg := fmt.Sprintf("the store holds mesh %s, not mesh %s this coordinator serves (--mesh-id): nothing is asked of peers, no seed share taken", got, want)
	if err := c.begin(ctx); err == nil {
		if s := c.view().state; (s == api.StateRecovering || s == api.StateLocked) && c.view().msg != msg {
			c.setState(s, msg)
		}
		c.end()
	}
	return fmt.Errorf("%w: %s", api.ErrRefused, msg)
}

// takeSeed verifies the store's history with a seed received from a peer
// and requires it to be what was read before trusting anything; only then is the
// seed sealed and adopted.
func (c *Coordinator) takeSeed(ctx context.Context, seed keys.Seed, peerFloor history.Floor, head string, gen uint64, unconfirmed bool) error {
	h, err := history.Load(ctx, c.st, seed, peerFloor)
	if errors.Is(err, history.ErrRollback) {
		return fmt.Errorf("the store is older than the attested peer's view: %w", err)
	}
	if err != nil {
		return fmt.Errorf("the seed the peer sent does not verify the store's history: %w", err)
	}
	if h.Head != head || h.Generation() != gen {
		return fmt.Errorf("the verified head %s (generation %d) is not the one read before (%s, %d); retry", h.Head[:12], h.Generation(), head[:12], gen)
	}
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()
	if unconfirmed {
		defer c.inheritUnconfirmed()
	}
	switch c.view().state {
	case api.StateLocked:
		// Sealed under the operator's unlock key, which this process does not
		// have: run on the peer's seed, leave the sealed state as it is (the
		// unlock key still opens it), and keep the floor in memory.
		c.kek = nil
		c.log.Warn("unlocked by an attested peer; sealed state stays under the operator's unlock key")
		return c.adoptLocked(ctx, seed, h.Floor())
	case api.StateRecovering:
	default:
		return fmt.Errorf("%w: coordinator is %s meanwhile", api.ErrConflict, c.view().state)
	}
	kek, unlockText, err := c.newKEK()
	if err != nil {
		return err
	}
	if unlockText != "" {
		return errors.New("peer recovery needs a TEE sealing key (--tee snp or simulated): an unlock key made here would be shown to nobody")
	}
	c.kek = kek
	c.update(func(v *view) { v.seed = &seed })
	if err := c.persistLocked(); err != nil {
		c.kek = nil
		c.update(func(v *view) { v.seed = nil })
		return err
	}
	return c.adoptLocked(ctx, seed, h.Floor())
}

// Recheck verifies the store against what this coordinator has seen, and
// against what attested peers run: a store whose latest is older than the
// generation an attested coordinator reports is a rollback, refused (anti-
// rollback across the cluster). A coordinator whose state is no longer an
// ancestor of the store's latest (another branch, written with the mesh's seed:
// an operator's recovery) stops issuing, and re-syncs to the store only when an
// attested ready peer runs exactly that latest. A failed coordinator keeps
// checking, so a repaired store brings it back.
func (c *Coordinator) Recheck(ctx context.Context) {
	v := c.view()
	if v.seed == nil || v.hist == nil || (!v.serving() && v.state != api.StateFailed) {
		return
	}
	seed, floor, m := *v.seed, v.hist.Floor(), v.hist.Manifest

	// Store and peers are read without the transition lock: enrolments
	// and updates go on meanwhile.
	h, err := history.Load(ctx, c.st, seed, floor)
	resync := false
	switch {
	case err == nil:
		if gen, url := c.peers.AttestedAhead(ctx, seed, m, h.Generation()); gen > h.Generation() {
			// The peer may have written since the read: read once more.
			if h, err = history.Load(ctx, c.st, seed, floor); err == nil && h.Generation() < gen {
				err = fmt.Errorf("%w: the store's latest is generation %d, but the attested coordinator at %s runs generation %d", history.ErrRollback, h.Generation(), url, gen)
			}
		}
	case errors.Is(err, history.ErrRollback):
		if other, lerr := history.Load(ctx, c.st, seed, history.Floor{}); lerr == nil && other.Generation() >= floor.Generation {
			if url := c.peers.AttestedRuns(ctx, seed, m, other.Head, other.Generation()); url != "" {
				c.log.Warn("the store's latest is not a descendant of this coordinator's state; an attested ready peer runs it: re-syncing",
					"peer", url, "generation", other.Generation(), "head", other.Head, "was", floor.Head)
				h, err, resync = other, nil, true
			}
		}
	}

	if c.begin(ctx) != nil {
		return
	}
	defer c.end()
	now := c.view()
	if now.seed == nil || *now.seed != seed || now.hist == nil {
		return // changed meanwhile
	}
	switch {
	case err != nil && !history.Verdict(err) && now.state != api.StateFailed:
		// The store did not answer (a full fd table, a network blip): the
		// verified state in hand stays good; tampering is for a verdict.
		c.setState(api.StateDegraded, "the store could not be read at the last check; retrying: "+err.Error())
		return
	case err != nil && history.Verdict(err):
		c.setState(api.StateFailed, err.Error())
		return
	case err != nil:
		return // failed stays failed until the store verifies
	}
	if resync {
		floor = history.Floor{}
	} else if now.hist.Generation() > floor.Generation {
		floor = now.hist.Floor() // an update here meanwhile
	}
	if now.state != api.StateReady || h.Head != now.hist.Head {
		c.adoptLocked(ctx, seed, floor)
	}
}

// confirmFresh asks the attested peers, after a restart from sealed state,
// whether this coordinator's history is the newest: one that runs exactly
// its head confirms it (it serves again); one that runs a newer generation
// shows that the store and the sealed state were rolled back together
// (failed, saying which peer knows better). Peers without a verified state
// say nothing.
func (c *Coordinator) confirmFresh(ctx context.Context) {
	v := c.view()
	if !v.unconfirmed || v.seed == nil || v.hist == nil || c.cfg.Issuer == nil {
		return
	}
	gen, head := v.hist.Generation(), v.hist.Head
	for _, url := range c.peers.URLs(v.seed) {
		st := c.peers.Status(ctx, v.hist.Manifest, url)
		if st == nil || st.Head == "" || st.MeshID != v.mesh {
			continue
		}
		switch {
		case st.Generation > gen:
			c.settle(ctx, v, func() {
				c.setState(api.StateFailed, fmt.Sprintf("rolled back: the attested coordinator at %s runs generation %d (head %s); this coordinator's store and sealed state are at generation %d — recover it from that peer (restart it without its state dir)",
					url, st.Generation, st.Head, gen))
			})
			return
		case st.Generation == gen && st.Head == head:
			c.settle(ctx, v, func() {
				c.update(func(v *view) { v.unconfirmed = false })
				if c.view().state == api.StateUnconfirmed {
					c.setState(api.StateReady, "")
				}
				c.log.Info("freshness confirmed by an attested peer", "peer", url, "generation", gen, "head", head)
			})
			return
		}
	}
}

// inheritUnconfirmed marks a coordinator that recovered from an unconfirmed
// peer unconfirmed too (the transition lock held).
func (c *Coordinator) inheritUnconfirmed() {
	if c.view().state != api.StateReady {
		return // the recovery failed
	}
	c.update(func(v *view) { v.unconfirmed = true })
	c.setState(api.StateUnconfirmed, "recovered from a peer whose freshness is unconfirmed; waiting for an attested peer at the same head to confirm it (or an owner: meshctl confirm)")
}

// settle runs f under the transition lock if the view is still v.
func (c *Coordinator) settle(ctx context.Context, v *view, f func()) {
	if c.begin(ctx) != nil {
		return
	}
	defer c.end()
	if c.view().hist == v.hist && c.view().unconfirmed {
		f()
	}
}
