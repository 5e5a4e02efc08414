package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

// Dial connects to another coordinator over attested TLS, accepting it only
// if its evidence passes policy (built from the coordinator roles of a
// manifest) and attesting with self.
type Dial func(url string, policy attest.Policy, self attest.Issuer) *api.Client

// AttestedDial dials a peer over attested TLS in which both sides attest.
func AttestedDial(url string, policy attest.Policy, self attest.Issuer) *api.Client {
	return api.NewClient(url, atls.Transport(policy, self))
}

const (
	// maxGossipPeers bounds how many gossip-announced members a coordinator
	// considers: anyone can join gossip and announce as many as they like.
	maxGossipPeers = 16
	// peerDialEvery is how often a recovering coordinator dials one
	// unvouched gossip-announced peer at most (the recovery tick is 5 s).
	peerDialEvery = 5 * time.Second
	// peerTimeout bounds one call to a peer: a peer that accepts and never
	// answers must not hold recovery, or a re-check, for longer.
	peerTimeout = 10 * time.Second
)

// Peers finds the other coordinators of the mesh and asks them, over attested
// TLS, for their state and for the seed. Peer recovery (invariant B) and
// anti-rollback across the cluster live here, beside the membership whose
// announcements they never trust as such.
type Peers struct {
	// Static are the --peers URLs, asked before any gossip finds.
	Static []string
	// Members is what gossip announces (nil: no cluster).
	Members func() []api.Member
	// Self is this coordinator's API URL, never its own peer.
	Self string
	// Issuer is this coordinator's TEE; nil: no attested TLS, no peers.
	Issuer attest.Issuer
	// Dial reaches a peer (AttestedDial if nil).
	Dial Dial
	Log  *slog.Logger
	Now  func() time.Time

	gate dialGate
}

func (p *Peers) dial(url string, policy attest.Policy) *api.Client {
	if p.Dial != nil {
		return p.Dial(url, policy, p.Issuer)
	}
	return AttestedDial(url, policy, p.Issuer)
}

func (p *Peers) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Vouch is the MAC a seed holder puts on its announcement, so that other
// holders can tell it from one anybody on the gossip port made.
func Vouch(seed keys.Seed, m api.Member) string {
	mac := hmac.New(sha256.New, seed.GossipKey())
	b, _ := json.Marshal([]any{m.API, m.State, m.Generation, m.Head})
	mac.Write(b)
	return hex.EncodeToString(mac.Sum(nil))
}

func vouched(seed keys.Seed, m api.Member) bool {
	got, err := hex.DecodeString(m.Vouch)
	want, _ := hex.DecodeString(Vouch(seed, m))
	return err == nil && hmac.Equal(got, want)
}

// Others returns the other members gossip knows. A coordinator that holds the
// seed keeps only those whose announcement is vouched for with it (another
// coordinator of this mesh made it): it never dials a URL that anyone on the
// gossip port could have announced. One without the seed (recovering) cannot
// tell, and dials through the gate, checking each peer over attested TLS.
func (p *Peers) Others(seed *keys.Seed) []api.Member {
	if p.Members == nil {
		return nil
	}
	var out []api.Member
	for _, m := range p.Members() {
		if m.Self || m.API == "" || m.API == p.Self {
			continue
		}
		if seed != nil && !vouched(*seed, m) {
			continue
		}
		if out = append(out, m); len(out) == maxGossipPeers {
			break
		}
	}
	return out
}

// Ahead reports whether some vouched member announces a generation or head
// this coordinator (at gen, head) does not have.
func (p *Peers) Ahead(seed keys.Seed, gen uint64, head string) bool {
	for _, m := range p.Others(&seed) {
		if m.Generation > gen || (m.Generation == gen && m.Head != "" && m.Head != head) {
			return true
		}
	}
	return false
}

// URLs are the coordinators to recover from: the static ones, then members
// gossip announces, ready ones first.
func (p *Peers) URLs(seed *keys.Seed) []string {
	urls := slices.Clone(p.Static)
	ms := p.Others(seed)
	slices.SortStableFunc(ms, func(a, b api.Member) int {
		return cmpBool(b.State == api.StateReady, a.State == api.StateReady)
	})
	for _, m := range ms {
		if slices.Contains(urls, m.API) {
			continue
		}
		// Unvouched (this coordinator has no seed to check with): anyone
		// may have announced it, so it is dialed at most once a gate
		// interval however often gossip changes.
		if seed == nil && !p.gate.admit(m.API, p.now()) {
			continue
		}
		urls = append(urls, m.API)
	}
	return urls
}

// Status asks the peer at url for its status, accepting it only as a
// coordinator role of m; nil if it cannot be reached or does not attest.
func (p *Peers) Status(ctx context.Context, m *manifest.Manifest, url string) *api.Status {
	if p.Issuer == nil {
		return nil // no TEE: no attested TLS to peers
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	st, err := p.dial(url, CoordinatorPolicy(m)).Status(ctx)
	if err != nil {
		p.Log.Debug("peer status", "peer", url, "err", err)
		return nil
	}
	return st
}

// AttestedAhead asks the members that announce, vouched for, a generation
// above gen for their status over attested TLS (accepting only coordinator
// roles of m), and returns the highest generation one of them confirms, with
// its URL. A store older than that is a rollback (anti-rollback across the
// cluster).
func (p *Peers) AttestedAhead(ctx context.Context, seed keys.Seed, m *manifest.Manifest, gen uint64) (uint64, string) {
	best, where := uint64(0), ""
	for _, o := range p.Others(&seed) {
		if o.Generation <= gen || o.State != api.StateReady {
			continue
		}
		if st := p.Status(ctx, m, o.API); st != nil && st.State == api.StateReady && st.Generation > best {
			best, where = st.Generation, o.API
		}
	}
	return best, where
}

// AttestedRuns returns the URL of a peer that attests as a coordinator of m
// and reports itself ready at exactly head and gen, or "".
func (p *Peers) AttestedRuns(ctx context.Context, seed keys.Seed, m *manifest.Manifest, head string, gen uint64) string {
	for _, url := range p.URLs(&seed) {
		if st := p.Status(ctx, m, url); st != nil && st.State == api.StateReady && st.Head == head && st.Generation == gen {
			return url
		}
	}
	return ""
}

// ReadyPeer returns the URL of a peer that attests as a coordinator of the
// store's latest manifest and reports itself ready, or "".
func (p *Peers) ReadyPeer(ctx context.Context, st store.Store) string {
	urls := p.URLs(nil)
	if len(urls) == 0 {
		return ""
	}
	m, _, _, err := history.Peek(ctx, st)
	if err != nil {
		return ""
	}
	for _, url := range urls {
		if s := p.Status(ctx, m, url); s != nil && s.State == api.StateReady {
			return url
		}
	}
	return ""
}

// Take verifies the store's history with a seed a peer sent, above the
// peer's view of it (floor), requires the verified head to be head at gen
// (read before anything was trusted), and only then adopts the seed.
// unconfirmed says the peer's own freshness is unconfirmed (it restarted
// from its sealed state and no one confirmed its head since).
type Take func(ctx context.Context, seed keys.Seed, floor history.Floor, head string, gen uint64, unconfirmed bool) error

// Recover takes the seed from a ready peer, in the order of the Contrast RFC
// (invariant B): read the latest from the store without trusting it; check
// with mesh that it is the mesh to serve; take that
// manifest's coordinator roles; attest the serving peer against them
// (attested TLS) before sending anything, proving this coordinator's own
// role in the same handshake; receive the seed; hand it to take, which
// verifies the store's history with it and requires the verified head to be
// the one read unverified.
func (p *Peers) Recover(ctx context.Context, st store.Store, urls []string, mesh func(id string) error, take Take) error {
	if p.Issuer == nil {
		return errors.New("peer recovery needs this coordinator's TEE (--tee)")
	}
	peeked, err := history.PeekAll(ctx, st)
	if err != nil {
		return fmt.Errorf("peer recovery: %w", err)
	}
	// The mesh is checked on the state the peers are chosen from, before
	// any of them is dialed.
	if err := mesh(peeked.MeshID); err != nil {
		return err
	}
	m, head, gen := peeked.Manifest, peeked.Head, peeked.Generation
	accept := CoordinatorPolicy(m)
	var errs []error
	for _, url := range urls {
		seed, floor, unconfirmed, err := p.askSeed(ctx, p.dial(url, accept))
		if err == nil {
			err = take(ctx, seed, floor, head, gen, unconfirmed)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", url, err))
			continue
		}
		p.Log.Info("recovered the seed from a peer", "peer", url, "generation", gen)
		return nil
	}
	return fmt.Errorf("peer recovery: no peer served: %w", errors.Join(errs...))
}

// askSeed asks an attested peer for the seed, encrypted to a key made for
// this one request. The peer's view of the history comes back as a floor: a
// store older than what it has seen is refused.
func (p *Peers) askSeed(ctx context.Context, peer *api.Client) (keys.Seed, history.Floor, bool, error) {
	var zero keys.Seed
	var floor history.Floor
	k, err := seal.NewX25519()
	if err != nil {
		return zero, floor, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	resp, err := peer.PeerKeys(ctx, &api.PeerKeysRequest{PublicKey: k.PublicKey().Bytes()})
	if err != nil {
		return zero, floor, false, err
	}
	raw, err := seal.OpenWith(k, seal.PeerSeedInfo, resp.Seed)
	if err != nil {
		return zero, floor, false, err
	}
	seed, err := keys.SeedFrom(raw)
	return seed, history.Floor{Generation: resp.Generation, Head: resp.Head}, resp.Unconfirmed, err
}

// CoordinatorPolicy accepts peers that attest as a coordinator role of m, and
// parses evidence only of the platforms those roles name.
func CoordinatorPolicy(m *manifest.Manifest) attest.Policy {
	return attest.Accept{Platforms: m.CoordinatorPlatforms(), Claims: func(cl *attest.Claims) error {
		_, err := CoordinatorRole(m, cl)
		return err
	}}
}

// CoordinatorRole returns the name of the coordinator role of m that c
// satisfies.
func CoordinatorRole(m *manifest.Manifest, c *attest.Claims) (string, error) {
	if len(m.Coordinators) == 0 {
		return "", errors.New("the manifest names no coordinator roles")
	}
	r, err := attest.Match(c, m.Coordinators, nil)
	if err != nil {
		return "", fmt.Errorf("not a coordinator of manifest %s (%v)", m.Hash()[:12], err)
	}
	return r.Name, nil
}

// dialGate admits each key at most once an interval.
type dialGate struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (g *dialGate) admit(key string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.last[key]; ok && now.Sub(t) < peerDialEvery {
		return false
	}
	if g.last == nil || len(g.last) > 4*maxGossipPeers {
		g.last = map[string]time.Time{} // forget; at worst one dial more each
	}
	g.last[key] = now
	return true
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
