package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/ca/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/manifest"
	"github.com/sealmesh/sealmesh/ca/seal"
)

// Peer dials another coordinator over attested TLS, accepting it only if its
// evidence passes accept (built from the coordinator roles of a manifest) and
// attesting with self.
type Peer func(url string, policy attest.Policy, self attest.Issuer) *api.Client

// dial returns how this coordinator reaches its peers.
func (c *Coordinator) dial() Peer {
	if c.cfg.Dial != nil {
		return c.cfg.Dial
	}
	return AttestedPeer
}

// coordinatorRole returns the name of the coordinator role c satisfies in m.
// coordinatorPolicy accepts peers that attest as a coordinator role of m, and
// parses evidence only of the platforms those roles name.
func coordinatorPolicy(m *manifest.Manifest) attest.Policy {
	return attest.Accept{Platforms: m.CoordinatorPlatforms(), Claims: func(cl *attest.Claims) error {
		_, err := coordinatorRole(m, cl)
		return err
	}}
}

func coordinatorRole(m *manifest.Manifest, c *attest.Claims) (string, error) {
	var why []string
	for _, r := range m.Coordinators {
		if err := c.Satisfies(r.Attestation); err != nil {
			why = append(why, fmt.Sprintf("%s: %v", r.Name, err))
			continue
		}
		return r.Name, nil
	}
	if len(m.Coordinators) == 0 {
		return "", errors.New("the manifest names no coordinator roles")
	}
	return "", fmt.Errorf("not a coordinator of manifest %s (%s)", m.Hash()[:12], strings.Join(why, "; "))
}

// PeerKeys hands the seed to another coordinator (invariant A): only when the
// requester attested in this connection's handshake (its TLS client
// certificate, fresh for this coordinator's nonce) as a coordinator role of the
// current manifest. Nothing is sent otherwise. The seed is encrypted to the key
// the attested requester sent on that connection.
func (c *Coordinator) PeerKeys(ctx context.Context, req *api.PeerKeysRequest) (*api.PeerKeysResponse, error) {
	claims := atls.PeerClaims(ctx)
	// The connection was attested in its handshake: that is the freshness.
	sv, err := c.serve(req.PublicKey, func() error { return nil })
	if err != nil {
		return nil, err
	}
	if claims == nil {
		c.log.Warn("peer key request refused", "err", "the requester did not attest in the TLS handshake")
		return nil, fmt.Errorf("%w: the requester did not attest in the TLS handshake (attested TLS with a client certificate)", ErrRefused)
	}
	m, seed, gen, head := sv.hist.Manifest, sv.seed, sv.hist.Generation(), sv.hist.Head
	if claims.Platform == manifest.PlatformSimulated && c.realTEE() && !c.cfg.AllowSimulatedCoordinators {
		c.log.Warn("peer key request refused", "err", "the requester attested with the simulated TEE")
		return nil, fmt.Errorf("%w: the requester attested with the simulated TEE and this coordinator runs a real one (--allow-simulated-coordinators, for development)", ErrRefused)
	}
	role, err := coordinatorRole(m, claims)
	if err != nil {
		c.log.Warn("peer key request refused", "err", err)
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	enc, err := seal.SealTo(req.PublicKey, seal.PeerSeedInfo, seed[:])
	if err != nil {
		return nil, err
	}
	c.log.Info("seed handed to an attested coordinator", "role", role, "measurement", claims.Measurement)
	return &api.PeerKeysResponse{Seed: enc, Generation: gen, Head: head}, nil
}

// RecoverFromPeers takes the seed from a ready peer, in the order of the
// Contrast RFC (invariant B): read the latest from the store without trusting it;
// take that manifest's coordinator roles; attest the serving peer against them
// (attested TLS) before sending anything, proving this coordinator's own
// role in the same handshake; receive the seed; verify the store's history with it; require the verified
// head to be the one read unverified; then seal and become ready.
func (c *Coordinator) RecoverFromPeers(ctx context.Context, peers []string, dial Peer) error {
	if c.cfg.Issuer == nil {
		return errors.New("peer recovery needs this coordinator's TEE (--tee)")
	}
	c.mu.Lock()
	state := c.state
	c.mu.Unlock()
	if state != api.StateRecovering && state != api.StateLocked {
		return fmt.Errorf("%w: coordinator is %s, not recovering or locked", ErrConflict, state)
	}
	m, head, gen, err := history.Peek(ctx, c.st)
	if err != nil {
		return fmt.Errorf("peer recovery: %w", err)
	}
	accept := coordinatorPolicy(m)
	var errs []error
	for _, url := range peers {
		seed, floor, err := c.askPeer(ctx, dial(url, accept, c.cfg.Issuer))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", url, err))
			continue
		}
		c.mu.Lock()
		err = c.takeSeedLocked(ctx, seed, floor, head, gen)
		c.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", url, err))
			continue
		}
		c.log.Info("recovered the seed from a peer", "peer", url, "generation", gen)
		return nil
	}
	return fmt.Errorf("peer recovery: no peer served: %w", errors.Join(errs...))
}

func (c *Coordinator) askPeer(ctx context.Context, peer *api.Client) (keys.Seed, history.Floor, error) {
	var zero keys.Seed
	var floor history.Floor
	k, err := seal.NewX25519()
	if err != nil {
		return zero, floor, err
	}
	resp, err := peer.PeerKeys(ctx, &api.PeerKeysRequest{PublicKey: k.PublicKey().Bytes()})
	if err != nil {
		return zero, floor, err
	}
	raw, err := seal.OpenWith(k, seal.PeerSeedInfo, resp.Seed)
	if err != nil {
		return zero, floor, err
	}
	seed, err := keys.SeedFrom(raw)
	// The attested peer's view of the history is a floor: a store older than
	// what it has seen is refused (anti-rollback across the cluster).
	return seed, history.Floor{Generation: resp.Generation, Head: resp.Head}, err
}

// takeSeedLocked verifies the store's history with a seed received from a peer
// and requires it to be what was read before trusting anything; only then is the
// seed sealed and adopted.
func (c *Coordinator) takeSeedLocked(ctx context.Context, seed keys.Seed, peerFloor history.Floor, head string, gen uint64) error {
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
	if c.state == api.StateLocked {
		// Sealed under the operator's unlock key, which this process does not
		// have: run on the peer's seed, leave the sealed state as it is (the
		// unlock key still opens it), and keep the floor in memory.
		c.seed, c.kek = &seed, nil
		c.log.Warn("unlocked by an attested peer; sealed state stays under the operator's unlock key")
		return c.adoptLocked(ctx, seed, h.Floor())
	}
	kek, unlockText, err := c.newKEKLocked()
	if err != nil {
		return err
	}
	if unlockText != "" {
		return errors.New("peer recovery needs a TEE sealing key (--tee snp or simulated): an unlock key made here would be shown to nobody")
	}
	c.seed, c.kek = &seed, kek
	if err := c.persistLocked(); err != nil {
		c.seed, c.kek = nil, nil
		return err
	}
	return c.adoptLocked(ctx, seed, h.Floor())
}

// readyPeerLocked returns the URL of a peer that attests as a coordinator of the
// store's latest manifest and reports itself ready, or "".
func (c *Coordinator) readyPeerLocked(ctx context.Context) string {
	urls := c.peerURLs(c.seed)
	if len(urls) == 0 {
		return ""
	}
	m, _, _, err := history.Peek(ctx, c.st)
	if err != nil {
		return ""
	}
	accept := coordinatorPolicy(m)
	for _, url := range urls {
		if st, err := c.dial()(url, accept, c.cfg.Issuer).Status(ctx); err == nil && st.State == api.StateReady {
			return url
		}
	}
	return ""
}
