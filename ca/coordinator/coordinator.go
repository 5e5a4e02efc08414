// Package coordinator is the coordinator's logic. It holds the mesh's seed (sealed
// at rest), derives the Nebula CA key from it, keeps the manifest history verified
// against the untrusted store, issues nonces, checks evidence against the
// manifest's roles and signs Nebula certificates whose name, IP and groups it
// assigns (invariant C).
package coordinator

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/ca/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/issuer"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/manifest"
	"github.com/sealmesh/sealmesh/ca/nonce"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/ca/store"
)

const (
	// sealedName is the local file holding the sealed seed and floor.
	sealedName = "sealed-state"

	// NonceLifetime bounds how old evidence may be.
	NonceLifetime = 2 * time.Minute
	// leasePoll is how often the leases are listed where the store cannot
	// be watched (the file store; etcd and Kubernetes send changes).
	leasePoll = 30 * time.Second
	// maxRedeemed caps the nonces remembered as used (each until it
	// expires); only verified enrolments redeem one.
	maxRedeemed = 100_000
	// caLifetime: the CA outlives every host certificate; rotation moves to the
	// next CA generation.
	caLifetime = 10 * 365 * 24 * time.Hour
	// lighthouseGroup is the group every lighthouse certificate carries.
	lighthouseGroup = "lighthouse"
)

// Errors that map to HTTP statuses.
var (
	ErrNotReady = errors.New("coordinator is not ready")
	ErrRefused  = errors.New("refused")
	ErrBadInput = errors.New("bad request")
	ErrConflict = errors.New("conflict")
)

// Config wires a coordinator.
type Config struct {
	Log *slog.Logger
	// Store is the shared, untrusted state.
	Store store.Store
	// StateDir holds this coordinator's sealed seed and anti-rollback floor.
	StateDir string
	// SealingKey comes from the TEE; nil means unlock-key mode: the first
	// manifest returns an unlock key, and a restarted coordinator waits for it.
	SealingKey []byte
	// Verifier checks evidence; nil verifies TEE evidence only (no tokens).
	Verifier *attest.Verifier
	// Issuer is this coordinator's own TEE, for attesting to peers; nil: no
	// peer recovery.
	Issuer attest.Issuer
	// Peers are other coordinators' URLs (https) to recover the seed from while
	// recovering.
	Peers []string
	// Dial connects to a peer, attesting with Issuer (AttestedPeer if nil).
	Dial Peer
	// API is the URL other coordinators and agents reach this one at, as
	// announced in gossip.
	API string
	// Members returns the cluster's members as gossip announces them (package
	// cluster): where peers are and what they claim, never trusted as such.
	Members func() []api.Member
	// AllowSimulatedCoordinators lets a coordinator whose own TEE is real
	// accept manifests with simulated coordinator roles and hand them the
	// seed (development only: anyone can run the simulated TEE). Without a
	// TEE, or with the simulated one, they are allowed anyway.
	AllowSimulatedCoordinators bool
	// Owners, when set, are the only Ed25519 keys that may create the mesh
	// (sign its first manifest): without them, anyone who reaches a
	// coordinator waiting for its first manifest creates the mesh.
	Owners []ed25519.PublicKey
	// RatePerSource bounds the API requests one IP address may make a
	// second (bursts of twice that); 0: no bound.
	RatePerSource float64
	Now           func() time.Time
}

// Coordinator serves one mesh.
type Coordinator struct {
	cfg   Config
	log   *slog.Logger
	st    store.Store
	now   func() time.Time
	mu    sync.Mutex
	state string
	msg   string
	seed  *keys.Seed
	kek   *seal.KEK
	hist  *history.State
	ca    *issuer.CA
	alloc *issuer.Allocator
	// nonces issues and redeems enrolment nonces; it has its own lock.
	nonces *nonce.Issuer
	// possession is this process's key for enrolments' proofs of
	// possession (api.Prove), handed out with each nonce.
	possession  *ecdh.PrivateKey
	recoveryKey *ecdh.PrivateKey
	// hints wakes Run when gossip says something changed.
	hints chan struct{}
	// gate bounds dials to gossip-announced peers nobody vouched for.
	gate dialGate
	// allocated is closed once alloc is made, for Run to follow the leases.
	allocated chan struct{}
	metrics   *metrics
}

// sealedState is what the sealed file holds.
type sealedState struct {
	Seed  []byte        `json:"seed"`
	Floor history.Floor `json:"floor"`
}

// New opens the coordinator's state: sealed seed from StateDir, history from the
// store. It never fails for a store that does not verify: it reports that in its
// state and serves nothing.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("coordinator: state dir: %w", err)
	}
	possession, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{cfg: cfg, possession: possession, log: cfg.Log, st: cfg.Store, now: cfg.Now, nonces: nonce.New(NonceLifetime, maxRedeemed, cfg.Now), hints: make(chan struct{}, 1), gate: dialGate{every: peerDialEvery}, allocated: make(chan struct{})}
	c.initMetrics()
	ctx := context.Background()
	_, err = os.Stat(filepath.Join(cfg.StateDir, sealedName))
	switch {
	case err == nil && cfg.SealingKey != nil:
		kek, err := seal.NewKEK("tee", cfg.SealingKey)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if err := c.openLocked(ctx, kek); errors.Is(err, ErrRefused) {
			c.setState(api.StateFailed, "the sealed state does not open with this TEE's key: it was sealed by another image or chip")
		}
		c.mu.Unlock()
	case err == nil:
		c.setState(api.StateLocked, "sealed state found; waiting for its unlock key (meshctl unlock)")
	case errors.Is(err, fs.ErrNotExist):
		if _, _, err := c.st.Latest(ctx); err == nil {
			c.setState(api.StateRecovering, "the store holds a mesh but this coordinator has no sealed seed; recover it with meshctl recover")
		} else if errors.Is(err, store.ErrNotFound) {
			c.setState(api.StateWaiting, "")
			c.log.Info("no mesh yet; waiting for meshctl manifest set")
		} else {
			return nil, fmt.Errorf("coordinator: store: %w", err)
		}
	default:
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	return c, nil
}

func (c *Coordinator) setState(state, msg string) {
	c.state, c.msg = state, msg
	switch state {
	case api.StateFailed:
		c.log.Error("coordinator stopped serving", "reason", msg)
	case api.StateLocked, api.StateRecovering:
		c.log.Warn("coordinator waiting", "state", state, "reason", msg)
	}
}

// openLocked unseals the local state with kek and adopts the store's history.
func (c *Coordinator) openLocked(ctx context.Context, kek *seal.KEK) error {
	raw, err := seal.ReadFile(c.cfg.StateDir, sealedName, kek)
	if err != nil {
		if errors.Is(err, seal.ErrWrongKey) {
			return fmt.Errorf("%w: %v", ErrRefused, err)
		}
		c.setState(api.StateFailed, "sealed state: "+err.Error())
		return err
	}
	var ss sealedState
	if err := json.Unmarshal(raw, &ss); err != nil {
		c.setState(api.StateFailed, "sealed state is not valid")
		return errors.New("sealed state is not valid")
	}
	seed, err := keys.SeedFrom(ss.Seed)
	if err != nil {
		return err
	}
	c.kek = kek
	return c.adoptLocked(ctx, seed, ss.Floor)
}

// adoptLocked verifies the store's history with seed above floor and, if it holds,
// becomes ready with it. A history that does not verify stops the coordinator.
func (c *Coordinator) adoptLocked(ctx context.Context, seed keys.Seed, floor history.Floor) error {
	h, err := history.Load(ctx, c.st, seed, floor)
	if errors.Is(err, history.ErrEmpty) && floor.Generation == 0 {
		// Sealed before the first transition was written, then stopped: no mesh.
		os.Remove(filepath.Join(c.cfg.StateDir, sealedName))
		c.seed, c.kek = nil, nil
		c.setState(api.StateWaiting, "")
		return nil
	}
	if err != nil {
		c.setState(api.StateFailed, err.Error())
		return err
	}
	ca, err := issuer.LoadCA(seed.CAKey(1), h.CAPEM)
	if err != nil {
		c.setState(api.StateFailed, err.Error())
		return err
	}
	if c.alloc == nil {
		if c.alloc, err = issuer.NewAllocator(c.st, h.Manifest, seed.LeaseKey()); err != nil {
			return err
		}
		if c.cfg.Members != nil && c.cfg.API != "" {
			c.alloc.Spread(c.cfg.API)
		}
		close(c.allocated)
	}
	c.alloc.SetReserved(h.Manifest)
	c.seed, c.hist, c.ca = &seed, h, ca
	if h.Floor() != floor {
		if err := c.persistLocked(); err != nil {
			c.setState(api.StateFailed, err.Error())
			return err
		}
	}
	c.setState(api.StateReady, "")
	c.log.Info("mesh state verified", "generation", h.Generation(), "head", h.Head, "manifest", h.Manifest.Hash(), "ca", ca.Fingerprint())
	if h.Manifest.AcceptsSimulated() {
		c.log.Warn("this mesh accepts SIMULATED attestation: evidence from a development TEE proves nothing about hardware; never use it for real workloads")
	}
	return nil
}

// persistLocked seals the seed and the floor to the local state dir. Without a
// KEK (unlocked by a peer, see takeSeedLocked) there is nothing it may write.
func (c *Coordinator) persistLocked() error {
	if c.kek == nil {
		return nil
	}
	floor := history.Floor{}
	if c.hist != nil {
		floor = c.hist.Floor()
	}
	raw, err := json.Marshal(sealedState{Seed: c.seed[:], Floor: floor})
	if err != nil {
		return err
	}
	return seal.WriteFile(c.cfg.StateDir, sealedName, raw, c.kek)
}

// newKEKLocked picks the KEK for fresh sealed state: the TEE's key, or a new
// unlock key whose text is returned for the caller to hand out once.
func (c *Coordinator) newKEKLocked() (*seal.KEK, string, error) {
	if c.cfg.SealingKey != nil {
		k, err := seal.NewKEK("tee", c.cfg.SealingKey)
		return k, "", err
	}
	return seal.NewUnlockKey()
}

// Run re-verifies the store whenever it changes (and every 30 s in case a change
// notification is lost) until ctx ends. A store that stops verifying stops the
// coordinator; a newer valid history (another coordinator's update) is adopted.
func (c *Coordinator) Run(ctx context.Context) {
	ch := c.st.Watch(ctx)
	allocated := c.allocated
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	peers := time.NewTicker(5 * time.Second)
	defer peers.Stop()
	c.tryPeers(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			c.tryPeers(ctx)
		case <-c.hints:
			// A member joined or announced something: a recovering
			// coordinator may now have a peer to ask.
			c.tryPeers(ctx)
			if !c.peerAhead() {
				continue
			}
		case <-allocated:
			// Other coordinators' leases, for status and as a guide for
			// the search (allocation itself settles every address in the
			// store), followed as they change: a listing of every lease
			// on a timer costs all coordinators at once the more the mesh
			// holds (at 10,000 leases, 49 ms of etcd and coordinator CPU
			// each time, and three coordinators started together list
			// together).
			allocated = nil
			c.mu.Lock()
			alloc := c.alloc
			c.mu.Unlock()
			go alloc.Follow(ctx, leasePoll, func(key string, err error) {
				c.log.Warn("lease record does not decode; left out of status", "key", key, "err", err)
			})
			continue
		case <-t.C:
		case <-peers.C:
			c.tryPeers(ctx)
			continue
		}
		c.Recheck(ctx)
	}
}

// tryPeers recovers a coordinator without secrets from a ready peer, if it
// has peers (static or from gossip) and a TEE to attest with.
func (c *Coordinator) tryPeers(ctx context.Context) {
	c.mu.Lock()
	if c.state == api.StateWaiting {
		// Another coordinator may have created the mesh meanwhile.
		if _, _, err := c.st.Latest(ctx); err == nil {
			c.setState(api.StateRecovering, "another coordinator created the mesh; recovering its seed from a peer (or meshctl recover)")
		}
	}
	recovering := c.state == api.StateRecovering || c.state == api.StateLocked
	seed := c.seed
	c.mu.Unlock()
	if urls := c.peerURLs(seed); recovering && len(urls) > 0 && c.cfg.Issuer != nil {
		if err := c.RecoverFromPeers(ctx, urls, c.dial()); err != nil {
			c.log.Warn("peer recovery", "err", err)
		}
	}
}

// Hint tells the coordinator that gossip changed (package cluster calls it):
// a peer may announce a newer generation, so look at the store now rather
// than at the next watch event or tick.
func (c *Coordinator) Hint() {
	select {
	case c.hints <- struct{}{}:
	default:
	}
}

// Member is what this coordinator announces in gossip.
func (c *Coordinator) Member() api.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := api.Member{API: c.cfg.API, State: c.state}
	if c.hist != nil {
		m.Generation, m.Head = c.hist.Generation(), c.hist.Head
	}
	if c.seed != nil {
		m.Vouch = vouch(*c.seed, m)
	}
	return m
}

// maxGossipPeers bounds how many gossip-announced members a coordinator
// considers: anyone can join gossip and announce as many as they like.
const maxGossipPeers = 16

// others returns the other members gossip knows. A coordinator that holds the
// seed keeps only those whose announcement is vouched for with it (another
// coordinator of this mesh made it): it never dials a URL that anyone on the
// gossip port could have announced. One without the seed (recovering) cannot
// tell, and dials through the gate, checking each peer over attested TLS.
func (c *Coordinator) others(seed *keys.Seed) []api.Member {
	if c.cfg.Members == nil {
		return nil
	}
	var out []api.Member
	for _, m := range c.cfg.Members() {
		if m.Self || m.API == "" || m.API == c.cfg.API {
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

// vouch is the MAC a seed holder puts on its announcement.
func vouch(seed keys.Seed, m api.Member) string {
	mac := hmac.New(sha256.New, seed.GossipKey())
	b, _ := json.Marshal([]any{m.API, m.State, m.Generation, m.Head})
	mac.Write(b)
	return hex.EncodeToString(mac.Sum(nil))
}

func vouched(seed keys.Seed, m api.Member) bool {
	got, err := hex.DecodeString(m.Vouch)
	want, _ := hex.DecodeString(vouch(seed, m))
	return err == nil && hmac.Equal(got, want)
}

// peerAhead reports whether some member announces a generation or head this
// coordinator does not have.
func (c *Coordinator) peerAhead() bool {
	c.mu.Lock()
	gen, head := uint64(0), ""
	if c.hist != nil {
		gen, head = c.hist.Generation(), c.hist.Head
	}
	seed := c.seed
	c.mu.Unlock()
	if seed == nil {
		return false // nothing to re-check without the seed
	}
	for _, m := range c.others(seed) {
		if m.Generation > gen || (m.Generation == gen && m.Head != "" && m.Head != head) {
			return true
		}
	}
	return false
}

// peerURLs are the coordinators to recover from: the static --peers, then
// members gossip announces, ready ones first.
func (c *Coordinator) peerURLs(seed *keys.Seed) []string {
	urls := slices.Clone(c.cfg.Peers)
	ms := c.others(seed)
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
		if seed == nil && !c.gate.admit(m.API, c.now()) {
			continue
		}
		urls = append(urls, m.API)
	}
	return urls
}

// peerDialEvery is how often a recovering coordinator dials one unvouched
// gossip-announced peer at most (the recovery tick is 5 s).
const peerDialEvery = 5 * time.Second

// dialGate admits each key at most once an interval.
type dialGate struct {
	mu    sync.Mutex
	every time.Duration
	last  map[string]time.Time
}

func (g *dialGate) admit(key string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.last[key]; ok && now.Sub(t) < g.every {
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

// AttestedPeer dials a peer coordinator over attested TLS in which both sides
// attest: the peer to accept, this coordinator with self.
func AttestedPeer(url string, policy attest.Policy, self attest.Issuer) *api.Client {
	return api.NewClient(url, atls.Transport(policy, self))
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
	c.mu.Lock()
	if c.seed == nil || c.hist == nil || (!c.servingLocked() && c.state != api.StateFailed) {
		c.mu.Unlock()
		return
	}
	seed, floor, m := *c.seed, c.hist.Floor(), c.hist.Manifest
	c.mu.Unlock()

	// Store and peers are read without the lock: enrolments go on meanwhile.
	h, err := history.Load(ctx, c.st, seed, floor)
	resync := false
	switch {
	case err == nil:
		if gen, url := c.attestedAhead(ctx, seed, m, h.Generation()); gen > h.Generation() {
			// The peer may have written since the read: read once more.
			if h, err = history.Load(ctx, c.st, seed, floor); err == nil && h.Generation() < gen {
				err = fmt.Errorf("%w: the store's latest is generation %d, but the attested coordinator at %s runs generation %d", history.ErrRollback, h.Generation(), url, gen)
			}
		}
	case errors.Is(err, history.ErrRollback):
		if other, lerr := history.Load(ctx, c.st, seed, history.Floor{}); lerr == nil && other.Generation() >= floor.Generation {
			if url := c.attestedRuns(ctx, seed, m, other.Head, other.Generation()); url != "" {
				c.log.Warn("the store's latest is not a descendant of this coordinator's state; an attested ready peer runs it: re-syncing",
					"peer", url, "generation", other.Generation(), "head", other.Head, "was", floor.Head)
				h, err, resync = other, nil, true
			}
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seed == nil || *c.seed != seed || c.hist == nil {
		return // changed meanwhile
	}
	switch {
	case err != nil && !history.Verdict(err) && c.state != api.StateFailed:
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
	}
	if c.state != api.StateReady || h.Head != c.hist.Head {
		c.adoptLocked(ctx, seed, floor)
	}
}

// attestedAhead asks the members that announce, vouched for, a generation above gen for
// their status over attested TLS (accepting only coordinator roles of m), and
// returns the highest generation one of them confirms, with its URL.
func (c *Coordinator) attestedAhead(ctx context.Context, seed keys.Seed, m *manifest.Manifest, gen uint64) (uint64, string) {
	best, where := uint64(0), ""
	for _, p := range c.others(&seed) {
		if p.Generation <= gen || p.State != api.StateReady {
			continue
		}
		if st := c.peerStatus(ctx, m, p.API); st != nil && st.State == api.StateReady && st.Generation > best {
			best, where = st.Generation, p.API
		}
	}
	return best, where
}

// attestedRuns returns the URL of a peer that attests as a coordinator of m and
// reports itself ready at exactly head and gen, or "".
func (c *Coordinator) attestedRuns(ctx context.Context, seed keys.Seed, m *manifest.Manifest, head string, gen uint64) string {
	for _, url := range c.peerURLs(&seed) {
		if st := c.peerStatus(ctx, m, url); st != nil && st.State == api.StateReady && st.Head == head && st.Generation == gen {
			return url
		}
	}
	return ""
}

func (c *Coordinator) peerStatus(ctx context.Context, m *manifest.Manifest, url string) *api.Status {
	if c.cfg.Issuer == nil {
		return nil // no TEE: no attested TLS to peers
	}
	accept := coordinatorPolicy(m)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := c.dial()(url, accept, c.cfg.Issuer).Status(ctx)
	if err != nil {
		c.log.Debug("peer status", "peer", url, "err", err)
		return nil
	}
	return st
}

// realTEE reports whether this coordinator attests with a hardware TEE.
func (c *Coordinator) realTEE() bool {
	return c.cfg.Issuer != nil && c.cfg.Issuer.Platform() != manifest.PlatformSimulated
}

// checkSimulatedCoordinators refuses a manifest whose coordinator roles accept
// the simulated TEE on a coordinator with a real one, unless allowed: such a
// role would let anyone who runs the simulated TEE receive the seed.
func (c *Coordinator) checkSimulatedCoordinators(m *manifest.Manifest) error {
	if m.SimulatedCoordinators() && c.realTEE() && !c.cfg.AllowSimulatedCoordinators {
		return fmt.Errorf("%w: a coordinator role accepts the simulated TEE, which anyone can run, and this coordinator attests with %s: it would hand such a peer the seed (for development, start it with --allow-simulated-coordinators)", ErrBadInput, c.cfg.Issuer.Platform())
	}
	return nil
}

// SetManifest creates the mesh (no manifest yet) or applies an owner-signed update.
func (c *Coordinator) SetManifest(ctx context.Context, req *api.ManifestRequest) (*api.ManifestResponse, error) {
	m, err := manifest.Parse(req.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if err := c.checkSimulatedCoordinators(m); err != nil {
		return nil, err
	}
	u := history.Update{Parent: req.Parent, SignerKey: req.SignerKey, Signature: req.Signature}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case api.StateWaiting:
		return c.createLocked(ctx, m, u)
	case api.StateReady, api.StateDegraded:
	default:
		return nil, fmt.Errorf("%w: %s: %s", ErrNotReady, c.state, c.msg)
	}
	if resp, err := c.replayedLocked(ctx, m, u); resp != nil || err != nil {
		return resp, err
	}
	if req.Parent == "" {
		return nil, fmt.Errorf("%w: the mesh exists (generation %d, head %s); an update names the head it replaces", ErrConflict, c.hist.Generation(), c.hist.Head)
	}
	if !slices.Equal(m.Prefixes(), c.hist.Manifest.Prefixes()) {
		return nil, fmt.Errorf("%w: networks cannot change (%v → %v): issued certificates carry addresses of them", ErrBadInput, c.hist.Manifest.Networks, m.Networks)
	}
	h, err := history.Append(ctx, c.st, *c.seed, c.hist, m, u, c.now())
	if err != nil {
		return nil, historyErr(err)
	}
	c.hist = h
	c.alloc.SetReserved(m)
	if err := c.persistLocked(); err != nil {
		c.setState(api.StateFailed, "could not seal the new floor: "+err.Error())
		return nil, err
	}
	c.log.Info("manifest updated", "generation", h.Generation(), "head", h.Head, "manifest", m.Hash(), "signer", h.Chain[len(h.Chain)-1].Signer)
	return &api.ManifestResponse{Status: c.statusLocked()}, nil
}

func historyErr(err error) error {
	switch {
	case errors.Is(err, history.ErrStale):
		return fmt.Errorf("%w: %v", ErrConflict, err)
	case errors.Is(err, history.ErrUnauthorized):
		return fmt.Errorf("%w: %v", ErrRefused, err)
	case errors.Is(err, history.ErrInvalid):
		return fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	return err
}

func (c *Coordinator) createLocked(ctx context.Context, m *manifest.Manifest, u history.Update) (*api.ManifestResponse, error) {
	if u.Parent != "" {
		return nil, fmt.Errorf("%w: there is no mesh yet; the first manifest has no parent", ErrConflict)
	}
	if len(c.cfg.Owners) > 0 && !slices.ContainsFunc(c.cfg.Owners, func(k ed25519.PublicKey) bool { return k.Equal(ed25519.PublicKey(u.SignerKey)) }) {
		return nil, fmt.Errorf("%w: this coordinator creates the mesh only with a manifest signed by one of the %d owner keys it was deployed with (--owner-key)", ErrRefused, len(c.cfg.Owners))
	}
	seed, err := keys.NewSeed()
	if err != nil {
		return nil, err
	}
	kek, unlockText, err := c.newKEKLocked()
	if err != nil {
		return nil, err
	}
	ca, err := issuer.NewCA(seed.CAKey(1), "sealmesh "+m.Hash()[:12], m.Prefixes(), caLifetime, c.now())
	if err != nil {
		return nil, err
	}
	shares, err := makeShares(m, seed)
	if err != nil {
		return nil, err
	}
	sharesRaw, err := encodeShares(shares)
	if err != nil {
		return nil, err
	}
	// Seal the seed before the store names the mesh, so a crash in between
	// cannot leave a mesh whose seed nobody has.
	c.seed, c.kek, c.hist = &seed, kek, nil
	if err := c.persistLocked(); err != nil {
		c.seed, c.kek = nil, nil
		return nil, err
	}
	h, err := history.Create(ctx, c.st, seed, m, u, ca.PEM(), sharesRaw, c.now())
	if err != nil {
		os.Remove(filepath.Join(c.cfg.StateDir, sealedName))
		c.seed, c.kek = nil, nil
		return nil, historyErr(err)
	}
	resp := &api.ManifestResponse{UnlockKey: unlockText, SeedShares: shares}
	if err := c.adoptLocked(ctx, seed, history.Floor{}); err != nil {
		return nil, err
	}
	c.log.Info("mesh created", "head", h.Head, "sealedWith", kek.ID(), "seedShares", len(resp.SeedShares))
	resp.Status = c.statusLocked()
	return resp, nil
}

// Unlock opens the sealed state with the operator's unlock key.
func (c *Coordinator) Unlock(ctx context.Context, text string) (*api.Status, error) {
	kek, err := seal.ParseUnlockKey(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != api.StateLocked {
		return nil, fmt.Errorf("%w: coordinator is %s, not locked", ErrConflict, c.state)
	}
	if err := c.openLocked(ctx, kek); err != nil {
		return nil, err
	}
	return c.statusLocked(), nil
}

// RotateUnlockKey re-seals the local state under a new unlock key, authorised by
// the current one. The rewrap is one atomic file replacement.
func (c *Coordinator) RotateUnlockKey(text string) (string, error) {
	cur, err := seal.ParseUnlockKey(text)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg.SealingKey != nil {
		return "", fmt.Errorf("%w: this coordinator seals with its TEE's key, not an unlock key", ErrConflict)
	}
	if c.kek == nil || subtle.ConstantTimeCompare([]byte(cur.ID()), []byte(c.kek.ID())) != 1 {
		return "", fmt.Errorf("%w: that is not the current unlock key", ErrRefused)
	}
	next, nextText, err := seal.NewUnlockKey()
	if err != nil {
		return "", err
	}
	if err := seal.RotateFile(c.cfg.StateDir, sealedName, cur, next); err != nil {
		return "", err
	}
	c.kek = next
	c.log.Info("unlock key rotated", "kek", next.ID())
	return nextText, nil
}

// RecoveryKey returns this process's X25519 key for receiving a seed.
func (c *Coordinator) RecoveryKey() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recoveryKey == nil {
		k, err := seal.NewX25519()
		if err != nil {
			return nil, err
		}
		c.recoveryKey = k
	}
	return c.recoveryKey.PublicKey().Bytes(), nil
}

// Recover takes the seed (from a seed share, via meshctl recover) and continues the
// mesh in the store: same CA, same history. The seed must verify the store's
// history, so a wrong share changes nothing.
func (c *Coordinator) Recover(ctx context.Context, req *api.RecoverRequest) (*api.ManifestResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == api.StateRecovering:
	case c.state == api.StateLocked && req.Force:
		c.log.Warn("replacing sealed state that could not be unlocked (recover --force)")
	case c.state == api.StateLocked:
		return nil, fmt.Errorf("%w: this coordinator has sealed state; unlock it, or recover with --force to replace it", ErrConflict)
	default:
		return nil, fmt.Errorf("%w: coordinator is %s; nothing to recover", ErrConflict, c.state)
	}
	if c.recoveryKey == nil {
		return nil, fmt.Errorf("%w: fetch the recovery key first", ErrBadInput)
	}
	if !req.Force {
		// A seed share is for when every coordinator is gone: a ready peer
		// would recover this coordinator by itself, without a second, divergent
		// copy of the mesh's secrets entering from outside.
		if url := c.readyPeerLocked(ctx); url != "" {
			return nil, fmt.Errorf("%w: peer %s is ready and will recover this coordinator; use --force to recover from the share anyway", ErrConflict, url)
		}
	}
	raw, err := seal.OpenWith(c.recoveryKey, seal.RecoveryInfo, req.Seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	seed, err := keys.SeedFrom(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	if _, err := history.Load(ctx, c.st, seed, history.Floor{}); err != nil {
		return nil, fmt.Errorf("%w: this seed does not verify the store's history: %v", ErrRefused, err)
	}
	kek, unlockText, err := c.newKEKLocked()
	if err != nil {
		return nil, err
	}
	prevState := c.state
	c.seed, c.kek = &seed, kek
	if err := c.persistLocked(); err != nil {
		c.seed, c.kek = nil, nil
		return nil, err
	}
	if err := c.adoptLocked(ctx, seed, history.Floor{}); err != nil {
		return nil, err
	}
	c.log.Warn("mesh recovered from a seed share", "from", prevState, "generation", c.hist.Generation())
	return &api.ManifestResponse{Status: c.statusLocked(), UnlockKey: unlockText}, nil
}

// Manifest returns the current manifest.
func (c *Coordinator) Manifest() (*api.ManifestInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hist == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotReady, c.state)
	}
	return &api.ManifestInfo{Generation: c.hist.Generation(), Head: c.hist.Head, Hash: c.hist.Manifest.Hash(), Manifest: c.hist.Manifest.Canonical()}, nil
}

// History returns the verified history with each manifest.
func (c *Coordinator) History(ctx context.Context) ([]api.HistoryEntry, error) {
	c.mu.Lock()
	h := c.hist
	c.mu.Unlock()
	if h == nil {
		return nil, fmt.Errorf("%w: no verified history", ErrNotReady)
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
		out = append(out, api.HistoryEntry{Generation: t.Generation, Head: head, Time: t.Time, Signer: t.Signer, Hash: t.Manifest, Manifest: raw})
	}
	return out, nil
}

// Nonce issues a fresh single-use nonce. Issuing stores nothing (package
// nonce), so asking for nonces cannot crowd out anyone's enrolment.
func (c *Coordinator) Nonce() (*api.NonceResponse, error) {
	if !c.Ready() {
		return nil, fmt.Errorf("%w: %s", ErrNotReady, c.State())
	}
	return c.spareNonce(), nil
}

// spareNonce is a nonce for the requester's next enrolment here, sent with
// this one's answer so that it need not ask (api.EnrolResponse.Next).
func (c *Coordinator) spareNonce() *api.NonceResponse {
	n, exp := c.nonces.Issue()
	return &api.NonceResponse{Nonce: n, Expires: exp, PossessionKey: c.possession.PublicKey().Bytes()}
}

// redeemNonce marks a verified request's nonce used: a nonce is honoured once.
func (c *Coordinator) redeemNonce(n []byte) error {
	switch err := c.nonces.Redeem(n); {
	case errors.Is(err, nonce.ErrFull):
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return nil
}

// identity is what the manifest assigns to a requester.
type identity struct {
	name   string
	role   string
	groups []string
	fixed  netip.Addr // lighthouses only
	ttl    time.Duration
	// workload is the pod as proven: the token's for token enrolments, the
	// request's (bound into the evidence) otherwise.
	workload api.Workload
}

// served is what a request redeemed under a nonce is served from.
type served struct {
	hist  *history.State
	seed  keys.Seed
	ca    *issuer.CA
	alloc *issuer.Allocator
}

// fresh checks the requester's X25519 key, that the coordinator is ready and
// that the nonce is one of its own and unexpired, returning the state to serve
// the request from. The nonce is redeemed only once the request verifies
// (redeemNonce), so unverified requests leave nothing behind.
func (c *Coordinator) fresh(n, publicKey []byte) (served, error) {
	return c.serve(publicKey, func() error {
		if err := c.nonces.Check(n); err != nil {
			return fmt.Errorf("%w: %v", ErrRefused, err)
		}
		return nil
	})
}

// serve checks the requester's X25519 key and that the coordinator is ready,
// runs fresh (the request's freshness check) under the lock, and returns the
// state to serve the request from.
func (c *Coordinator) serve(publicKey []byte, fresh func() error) (served, error) {
	if len(publicKey) != 32 {
		return served{}, fmt.Errorf("%w: publicKey is %d bytes, want a 32-byte X25519 key", ErrBadInput, len(publicKey))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.servingLocked() {
		return served{}, fmt.Errorf("%w: %s", ErrNotReady, c.state)
	}
	if err := fresh(); err != nil {
		return served{}, err
	}
	return served{hist: c.hist, seed: *c.seed, ca: c.ca, alloc: c.alloc}, nil
}

// Enrol checks the request and issues a certificate.
func (c *Coordinator) Enrol(ctx context.Context, req *api.EnrolRequest) (resp *api.EnrolResponse, err error) {
	defer func(start time.Time) {
		// A bug below must not count as an issued certificate (err was
		// nil when it panicked), nor leave the request without an answer.
		if r := recover(); r != nil {
			c.log.Error("enrolment panicked", "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("internal error in enrolment (logged by the coordinator)")
		}
		c.observe(start, err)
	}(time.Now())
	sv, err := c.fresh(req.Nonce, req.PublicKey)
	if err != nil {
		return nil, err
	}
	m, ca, alloc := sv.hist.Manifest, sv.ca, sv.alloc
	if err := api.CheckPossession(c.possession, req.Nonce, req.PublicKey, req.Proof); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}

	verifying := time.Now()
	id, err := identify(ctx, c.cfg.Verifier, m, req)
	c.timed("verify", verifying)
	if err != nil {
		c.log.Warn("enrolment refused", "workload", workloadString(req.Workload), "err", err)
		return nil, err
	}
	if err := c.redeemNonce(req.Nonce); err != nil {
		return nil, err
	}

	now := c.now()
	holder := issuer.Holder(req.PublicKey)
	if m.RevokedHolder(holder) {
		c.log.Warn("enrolment refused: revoked key", "workload", workloadString(req.Workload), "holder", holder)
		return nil, fmt.Errorf("%w: a certificate for this key was revoked (manifest %s); the workload needs a new key", ErrRefused, m.Hash()[:12])
	}
	// The certificate is signed for the address chosen, and handed out only
	// once its lease is recorded (Issue signs again if another coordinator
	// recorded that address first).
	var crt cert.Certificate
	var addrs []netip.Prefix
	release := make([]byte, 32)
	rand.Read(release) // never fails (crypto/rand)
	releaseToken := hex.EncodeToString(release)
	recording := time.Now()
	lease, err := alloc.Issue(ctx, id.fixed, holder, id.role, now, func(ip netip.Addr) (issuer.Lease, error) {
		name := id.name
		if name == "" {
			name = id.role + "-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
		}
		addrs = m.HostAddrs(ip)
		var err error
		crt, err = ca.Sign(issuer.Host{
			Name: name, Networks: addrs, Groups: id.groups, PublicKey: req.PublicKey, NotAfter: now.Add(id.ttl),
		}, now)
		if err != nil {
			return issuer.Lease{}, err
		}
		fp, err := crt.Fingerprint()
		if err != nil {
			return issuer.Lease{}, err
		}
		return issuer.Lease{
			IP: ip, Name: name, Role: id.role, Groups: id.groups, Fingerprint: fp, Holder: holder,
			NotAfter: crt.NotAfter(), Workload: workloadString(id.workload), ReleaseHash: hashHex(releaseToken),
		}, nil
	})
	c.timed("record", recording)
	if err != nil {
		return nil, err
	}
	certPEM, err := crt.MarshalPEM()
	if err != nil {
		return nil, err
	}
	id.name = lease.Name
	c.log.Info("certificate issued", "name", id.name, "role", id.role, "ips", addrs, "fingerprint", lease.Fingerprint, "workload", workloadString(id.workload))

	resp = &api.EnrolResponse{
		Name: id.name, Role: id.role, IP: addrs[0].String(), Groups: id.groups,
		NotAfter: crt.NotAfter(), Certificate: string(certPEM), CA: string(ca.PEM()),
		Inbound: inbound(m, id), ReleaseToken: releaseToken, Blocklist: blocklist(m, alloc, now), Head: sv.hist.Head,
		Next: c.spareNonce(),
	}
	for _, a := range addrs {
		resp.IPs = append(resp.IPs, a.String())
	}
	for _, l := range m.Lighthouses {
		resp.Lighthouses = append(resp.Lighthouses, api.Lighthouse{OverlayIP: l.OverlayIP, Underlay: l.Underlay})
	}
	return resp, nil
}

// blocklist is every certificate the manifest revokes: those it names, and
// every live one issued to a revoked holder's key, renewed-away ones too (a
// revoked host kept its previous certificate, same key and address, for up
// to a third of the lifetime).
func blocklist(m *manifest.Manifest, alloc *issuer.Allocator, now time.Time) []string {
	out := m.Blocklist()
	for _, fp := range alloc.HeldBy(m.RevokedHolder, now) {
		if !slices.Contains(out, fp) {
			out = append(out, fp)
		}
	}
	return out
}

// identify matches the request to exactly what the manifest allows: a lighthouse
// by its token, a workload by its evidence. Nothing else in the request counts.
func identify(ctx context.Context, v *attest.Verifier, m *manifest.Manifest, req *api.EnrolRequest) (identity, error) {
	switch {
	case req.JoinToken != "" && req.Evidence != nil:
		return identity{}, fmt.Errorf("%w: send evidence or a join token, not both", ErrBadInput)
	case req.JoinToken != "":
		if err := manifest.CheckJoinToken(req.JoinToken); err != nil {
			return identity{}, fmt.Errorf("%w: %v", ErrRefused, err)
		}
		sum := hashHex(req.JoinToken)
		for _, l := range m.Lighthouses {
			if subtle.ConstantTimeCompare([]byte(sum), []byte(l.TokenSHA256)) == 1 {
				return identity{name: l.Name, role: lighthouseGroup, groups: []string{lighthouseGroup},
					fixed: netip.MustParseAddr(l.OverlayIP), ttl: m.Lifetime()}, nil
			}
		}
		return identity{}, fmt.Errorf("%w: join token matches no lighthouse of the manifest", ErrRefused)
	case req.Evidence == nil:
		return identity{}, fmt.Errorf("%w: no evidence and no join token", ErrBadInput)
	}

	rd := attest.ReportData(req.Nonce, req.PublicKey, req.Binding())
	claims, err := v.Verify(ctx, attest.Evidence{Platform: req.Evidence.Platform, Data: req.Evidence.Data}, rd)
	if err != nil {
		return identity{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	w := req.Workload
	if claims.Platform == manifest.PlatformOIDC {
		// A token names its pod itself, and it is all a token proves: the
		// request's workload is a claim the token must back, never a
		// substitute for it (a dev token claiming prod/db-0 got prod's role).
		if err := sameWorkload(w, claims); err != nil {
			return identity{}, fmt.Errorf("%w: %v", ErrRefused, err)
		}
		w = api.Workload{Namespace: claims.Namespace, Name: claims.Pod, UID: claims.PodUID, ServiceAccount: claims.ServiceAccount}
	}
	var why []string
	for i := range m.Roles {
		r := &m.Roles[i]
		if err := claims.Satisfies(r.Attestation); err != nil {
			why = append(why, fmt.Sprintf("role %s: %v", r.Name, err))
			continue
		}
		// In node mode the node's evidence speaks for its pods; the pod it
		// names (bound into the evidence's report data) picks the role.
		if !r.PodSelector.Matches(w.Namespace, w.ServiceAccount) {
			why = append(why, fmt.Sprintf("role %s: its podSelector does not select pod %s/%s (service account %q)", r.Name, w.Namespace, w.Name, w.ServiceAccount))
			continue
		}
		groups := r.Groups
		if claims.Platform == manifest.PlatformOIDC {
			// The weaker proof is visible to every peer's firewall.
			groups = append(slices.Clone(groups), attest.TokenGroup)
		}
		return identity{role: r.Name, groups: groups, ttl: m.RoleLifetime(r), workload: w}, nil
	}
	return identity{}, fmt.Errorf("%w: %s evidence matches no role of manifest %s: %s",
		ErrRefused, claims.Platform, m.Hash()[:12], strings.Join(why, "; "))
}

// sameWorkload checks that a token enrolment claims no other pod than the
// token's own (fields the request leaves empty claim nothing).
func sameWorkload(w api.Workload, c *attest.Claims) error {
	for _, f := range []struct{ what, claimed, token string }{
		{"namespace", w.Namespace, c.Namespace}, {"pod", w.Name, c.Pod}, {"pod UID", w.UID, c.PodUID}, {"service account", w.ServiceAccount, c.ServiceAccount},
	} {
		if f.claimed != "" && f.claimed != f.token {
			return fmt.Errorf("the request claims %s %q, the service-account token is for %q", f.what, f.claimed, f.token)
		}
	}
	return nil
}

// inbound turns the manifest's rules between groups into the Nebula inbound rules
// of one host. Nebula's `groups` means all of them, so "from any of" becomes one
// rule per group.
func inbound(m *manifest.Manifest, id identity) []api.FirewallRule {
	var out []api.FirewallRule
	if id.role == lighthouseGroup {
		return []api.FirewallRule{{Proto: "icmp", Port: "any"}}
	}
	for _, r := range m.Firewall {
		has := false
		for _, g := range id.groups {
			has = has || g == r.To
		}
		if !has {
			continue
		}
		port := r.Port
		if r.Proto == "icmp" {
			port = "any"
		}
		for _, from := range r.From {
			if from == "any" {
				from = ""
			}
			out = append(out, api.FirewallRule{Proto: r.Proto, Port: port, Group: from})
		}
	}
	return out
}

// Release ends a lease (CNI DEL).
func (c *Coordinator) Release(ctx context.Context, req *api.ReleaseRequest) error {
	c.mu.Lock()
	alloc, state, serving := c.alloc, c.state, c.servingLocked()
	c.mu.Unlock()
	if alloc == nil || !serving {
		return fmt.Errorf("%w: %s", ErrNotReady, state)
	}
	var ip netip.Addr
	if req.IP != "" {
		// The enrolment's IP as it was sent: an address with its prefix.
		p, err := netip.ParsePrefix(req.IP)
		if err != nil {
			return fmt.Errorf("%w: ip: %v", ErrBadInput, err)
		}
		ip = p.Addr()
	}
	switch err := alloc.Release(ctx, ip, req.Fingerprint, hashHex(req.ReleaseToken)); {
	case errors.Is(err, issuer.ErrReleaseRefused):
		return fmt.Errorf("%w: %v", ErrRefused, err)
	case err != nil:
		// The store's: a retry may succeed (500, not 403).
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// Status reports the mesh as the coordinator sees it.
func (c *Coordinator) Status() *api.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statusLocked()
}

// StatusOf is Status listing only the live hosts that host names: a
// certificate fingerprint or name, an overlay IP or a pod (namespace/name).
func (c *Coordinator) StatusOf(host string) *api.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status(host)
}

// PublicStatus is Status for anyone who asks (GET /v1/status): the host
// count, not the hosts. Their names, addresses, fingerprints and pods map
// the mesh for an attacker; they are for owners and coordinators (Hosts).
func (c *Coordinator) PublicStatus() *api.Status {
	s := c.Status()
	s.Hosts, s.HostsWithheld = nil, true
	return s
}

// Hosts is Status with its host list (all, or those req.Host names), for a
// requester that attested in the TLS handshake as a coordinator role of the
// current manifest, or that shows an owner key of it (req.Proof).
func (c *Coordinator) Hosts(ctx context.Context, req *api.HostsRequest) (*api.Status, error) {
	c.mu.Lock()
	var m *manifest.Manifest
	if c.hist != nil {
		m = c.hist.Manifest
	}
	c.mu.Unlock()
	if m == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotReady, c.State())
	}
	if err := c.mayListHosts(ctx, m, req.Proof); err != nil {
		return nil, err
	}
	return c.StatusOf(req.Host), nil
}

func (c *Coordinator) mayListHosts(ctx context.Context, m *manifest.Manifest, p *api.OwnerProof) error {
	if claims := atls.PeerClaims(ctx); claims != nil && p == nil {
		if claims.Platform == manifest.PlatformSimulated && c.realTEE() && !c.cfg.AllowSimulatedCoordinators {
			return fmt.Errorf("%w: the host list is for owners and coordinators; the requester attested with the simulated TEE", ErrRefused)
		}
		if _, err := coordinatorRole(m, claims); err != nil {
			return fmt.Errorf("%w: the host list is for owners and coordinators: %v", ErrRefused, err)
		}
		return nil
	}
	if err := p.Verify(api.PurposeHosts, c.now()); err != nil {
		return fmt.Errorf("%w: the host list is for owners and coordinators: %v", ErrRefused, err)
	}
	if !c.isOwner(m, p.SignerKey) {
		return fmt.Errorf("%w: the host list is for owners and coordinators: the signing key is not an owner of the current manifest", ErrRefused)
	}
	return nil
}

// State is the coordinator's state (api.State*).
func (c *Coordinator) State() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Ready reports whether the coordinator can enrol.
func (c *Coordinator) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servingLocked()
}

// servingLocked reports whether the coordinator serves from a verified
// state: ready, or degraded (the store did not answer its last check).
func (c *Coordinator) servingLocked() bool {
	return c.state == api.StateReady || c.state == api.StateDegraded
}

func (c *Coordinator) statusLocked() *api.Status { return c.status("") }

// maxStatusHosts is api.MaxStatusHosts; tests lower it.
var maxStatusHosts = api.MaxStatusHosts

func (c *Coordinator) status(match string) *api.Status {
	s := &api.Status{State: c.state, Message: c.msg, Hosts: []api.Host{}}
	if c.hist != nil {
		s.ManifestHash = c.hist.Manifest.Hash()
		s.AcceptsSimulated = c.hist.Manifest.AcceptsSimulated()
		s.Generation = c.hist.Generation()
		s.Head = c.hist.Head
	}
	if c.ca != nil {
		s.CAFingerprint = c.ca.Fingerprint()
	}
	if c.cfg.Members != nil {
		s.Members = c.cfg.Members()
	}
	if c.alloc != nil && c.servingLocked() {
		live := c.alloc.Live(c.now())
		s.HostCount = len(live)
		for _, l := range live {
			if match != "" && match != l.Fingerprint && match != l.Name && match != l.IP.String() && (l.Workload == "" || match != l.Workload) {
				continue
			}
			if len(s.Hosts) == maxStatusHosts {
				break
			}
			s.Hosts = append(s.Hosts, api.Host{
				Name: l.Name, Role: l.Role, IP: l.IP.String(), Groups: l.Groups,
				NotAfter: l.NotAfter, Fingerprint: l.Fingerprint, Workload: l.Workload, Holder: l.Holder,
			})
		}
	}
	return s
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func workloadString(w api.Workload) string {
	if w.Namespace == "" && w.Name == "" {
		return ""
	}
	return w.Namespace + "/" + w.Name
}
