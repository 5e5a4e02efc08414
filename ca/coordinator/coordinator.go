// Package coordinator is the coordinator's verified state machine: it holds
// the mesh's seed (sealed at rest), derives the Nebula CA key from it, and keeps
// the manifest history verified against the untrusted store, moving between
// the states of api.State* (starting → waiting → ready ↔ degraded, locked,
// recovering, failed). What it serves is an immutable view that readers take
// without a lock; enrolment (package enrol) and peer recovery (package
// cluster) are served from that view.
package coordinator

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/cluster"
	"github.com/sealmesh/sealmesh/ca/enrol"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/ipam"
	"github.com/sealmesh/sealmesh/ca/issuer"
	"github.com/sealmesh/sealmesh/ca/kbs"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/internal/retry"
)

const (
	// sealedName is the local file holding the sealed seed and floor.
	sealedName = "sealed-state"
	// NonceLifetime bounds how old evidence may be.
	NonceLifetime = enrol.NonceLifetime
	// leasePoll is how often the leases are listed where the store cannot
	// be watched (the file store; etcd and Kubernetes send changes).
	leasePoll = 30 * time.Second
	// caLifetime: the CA outlives every host certificate; rotation moves to the
	// next CA generation.
	caLifetime = 10 * 365 * 24 * time.Hour
	// storeTimeout bounds one attempt to read the store at start.
	storeTimeout = 10 * time.Second
)

// Config wires a coordinator.
type Config struct {
	Log *slog.Logger
	// Version is the binary's, for sealmesh_build_info, /v1/status and
	// the member announced in gossip.
	Version string
	// Store is the shared, untrusted state; StoreAddr says where it is, for
	// the logs.
	Store     store.Store
	StoreAddr string
	// StateDir holds this coordinator's sealed seed and anti-rollback floor.
	StateDir string
	// MeshID pins the mesh this coordinator serves (history.State.MeshID):
	// a store, a peer or a seed share of another mesh is refused before
	// anything is asked or adopted. Empty: the sealed state's, or, for a
	// coordinator without one, the first mesh it recovers (trust on first
	// use, said in its log and status).
	MeshID string
	// SealingKey comes from the TEE; nil means unlock-key mode: the first
	// manifest returns an unlock key, and a restarted coordinator waits for it.
	SealingKey []byte
	// Verifier checks evidence; nil verifies TEE evidence only (no tokens).
	Verifier *attest.Verifier
	// Issuer is this coordinator's own TEE, for attesting to peers; nil: no
	// peer recovery.
	Issuer attest.Issuer
	// TLSPublicKey is the attested-TLS server's key (atls.Server.PublicKey),
	// which the attest endpoint's evidence binds; nil: no attest endpoint.
	TLSPublicKey []byte
	// Peers are other coordinators' URLs (https) to recover the seed from while
	// recovering.
	Peers []string
	// Dial connects to a peer, attesting with Issuer (cluster.AttestedDial
	// if nil).
	Dial cluster.Dial
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

// view is what the coordinator serves: replaced whole on every change, read
// without a lock (Coordinator.view).
type view struct {
	state, msg string
	// mesh is the ID of the mesh served or expected ("" before any);
	// firstUse: taken from the store unpinned.
	mesh     string
	firstUse bool
	// unconfirmed: restarted from sealed state, and no attested peer or
	// owner has confirmed since that its history is the newest.
	unconfirmed bool
	seed        *keys.Seed
	hist        *history.State
	ca          *issuer.CA
	alloc       *ipam.Allocator
}

func (v *view) serving() bool { return v.state == api.StateReady || v.state == api.StateDegraded }

// Coordinator serves one mesh.
type Coordinator struct {
	cfg Config
	log *slog.Logger
	st  store.Store
	now func() time.Time
	// v is the current view. Readers (status, probes, metrics, enrolment)
	// load it and never wait; only a transition replaces it.
	v atomic.Pointer[view]
	// tx serialises transitions (start, manifest updates, unlock, recovery,
	// adopting a newer history): a transition reads and writes the store and
	// the sealed file while holding it, but never dials a peer, and no
	// reader takes it. Acquired with begin, which a context cancels.
	tx chan struct{}
	// kek seals the local state; guarded by tx.
	kek *seal.KEK
	// keyMu guards recoveryKey and shares (no I/O under it).
	keyMu       sync.Mutex
	recoveryKey *ecdh.PrivateKey
	// shares are the seed shares received for a recovery from a split
	// seed, by share ID, until there are enough to join.
	shares map[uint64][]byte
	enrol  *enrol.Service
	kbs    *kbs.Server
	peers  *cluster.Peers
	// hints wakes Run when gossip says something changed.
	hints chan struct{}
	// allocated is closed once alloc is made, for Run to follow the leases.
	allocated chan struct{}
	metrics   *metrics
}

// sealedState is what the sealed file holds.
type sealedState struct {
	Seed  []byte        `json:"seed"`
	Floor history.Floor `json:"floor"`
	// MeshID is the mesh the seed is for; empty in state sealed before
	// mesh IDs, filled at the next seal.
	MeshID string `json:"meshID,omitempty"`
}

// New makes a coordinator in state starting. It does no I/O: Start (or Run)
// reads the sealed state and the store, so that a caller can serve its
// health port before the store answers.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Coordinator{cfg: cfg, log: cfg.Log, st: cfg.Store, now: cfg.Now, tx: make(chan struct{}, 1),
		hints: make(chan struct{}, 1), allocated: make(chan struct{})}
	c.v.Store(&view{state: api.StateStarting, msg: "reading the sealed state and the store", mesh: cfg.MeshID})
	c.peers = &cluster.Peers{Static: cfg.Peers, Members: cfg.Members, Self: cfg.API, Issuer: cfg.Issuer, Dial: cfg.Dial, Log: cfg.Log, Now: cfg.Now}
	var err error
	if c.enrol, err = enrol.New(cfg.Log, cfg.Verifier, cfg.Now, c.serving); err != nil {
		return nil, err
	}
	if c.kbs, err = kbs.New(cfg.Log, c.enrol, cfg.Now); err != nil {
		return nil, err
	}
	c.initMetrics()
	return c, nil
}

// Open is New and Start: a coordinator whose state is read, or an error.
func Open(ctx context.Context, cfg Config) (*Coordinator, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Start reads the sealed state from StateDir and the history from the store,
// once. It fails only when one of them cannot be read; a store that does not
// verify is a state (failed), not an error. Run calls it until it succeeds.
func (c *Coordinator) Start(ctx context.Context) error {
	if err := c.begin(ctx); err != nil {
		return err
	}
	defer c.end()
	if c.view().state != api.StateStarting {
		return nil
	}
	if err := os.MkdirAll(c.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("coordinator: state dir: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	_, err := os.Stat(filepath.Join(c.cfg.StateDir, sealedName))
	switch {
	case err == nil && c.cfg.SealingKey != nil:
		kek, err := seal.NewKEK("tee", c.cfg.SealingKey)
		if err != nil {
			return err
		}
		if err := c.openLocked(ctx, kek); errors.Is(err, api.ErrRefused) {
			c.setState(api.StateFailed, "the sealed state does not open with this TEE's key: it was sealed by another image or chip")
		} else if err != nil && c.view().state == api.StateStarting {
			return err // the store did not answer: try again
		}
	case err == nil:
		c.setState(api.StateLocked, "sealed state found; waiting for its unlock key (meshctl unlock)")
	case errors.Is(err, fs.ErrNotExist):
		switch _, _, err := c.st.Latest(ctx); {
		case err == nil:
			c.setState(api.StateRecovering, "the store holds a mesh but this coordinator has no sealed seed; recover it with meshctl recover")
		case errors.Is(err, store.ErrNotFound):
			c.setState(api.StateWaiting, "")
			c.log.Info("no mesh yet; waiting for meshctl manifest set")
		default:
			return fmt.Errorf("coordinator: store: %w", err)
		}
	default:
		return fmt.Errorf("coordinator: %w", err)
	}
	return nil
}

// begin takes the transition lock, or fails when ctx ends first.
func (c *Coordinator) begin(ctx context.Context) error {
	select {
	case c.tx <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", api.ErrNotReady, ctx.Err())
	}
}

func (c *Coordinator) end() { <-c.tx }

// view is the current view; never nil, never to be modified.
func (c *Coordinator) view() *view { return c.v.Load() }

// update replaces the view with a changed copy; tx must be held.
func (c *Coordinator) update(f func(*view)) {
	next := *c.v.Load()
	f(&next)
	c.v.Store(&next)
}

func (c *Coordinator) setState(state, msg string) {
	c.update(func(v *view) { v.state, v.msg = state, msg })
	switch state {
	case api.StateFailed:
		c.log.Error("coordinator stopped serving", "reason", msg)
	case api.StateLocked, api.StateRecovering:
		c.log.Warn("coordinator waiting", "state", state, "reason", msg)
	}
}

// serving is what enrolment serves from, or api.ErrNotReady.
func (c *Coordinator) serving() (enrol.Serving, error) {
	v := c.view()
	if !v.serving() {
		return enrol.Serving{}, fmt.Errorf("%w: %s", api.ErrNotReady, v.state)
	}
	return enrol.Serving{Hist: v.hist, CA: v.ca, Alloc: v.alloc, Store: c.cfg.Store}, nil
}

// openLocked unseals the local state with kek and adopts the store's history.
func (c *Coordinator) openLocked(ctx context.Context, kek *seal.KEK) error {
	raw, err := seal.ReadFile(c.cfg.StateDir, sealedName, kek)
	if err != nil {
		if errors.Is(err, seal.ErrWrongKey) {
			return fmt.Errorf("%w: %v", api.ErrRefused, err)
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
	if ss.MeshID != "" {
		if want := c.view().mesh; want != "" && want != ss.MeshID {
			c.setState(api.StateFailed, fmt.Sprintf("the sealed state is for mesh %s; this coordinator was started for mesh %s (--mesh-id)", ss.MeshID, want))
			return fmt.Errorf("%w: sealed state of another mesh", api.ErrRefused)
		}
		c.update(func(v *view) { v.mesh = ss.MeshID })
	}
	c.kek = kek
	if err := c.adoptLocked(ctx, seed, ss.Floor); err != nil {
		return err
	}
	// A store and a sealed state restored together from an old copy
	// verify: only someone who saw a newer head can tell.
	c.update(func(v *view) { v.unconfirmed = true })
	if c.hasPeers() {
		c.setState(api.StateUnconfirmed, fmt.Sprintf("restarted from sealed state at generation %d; waiting for an attested peer (or an owner: meshctl confirm) to confirm it is the newest", c.view().hist.Generation()))
	} else {
		c.log.Warn("freshness unconfirmed: restarted from sealed state with no peer to ask; serving generation " + fmt.Sprint(c.view().hist.Generation()) + " (an owner confirms it is the newest with meshctl confirm)")
	}
	return nil
}

// hasPeers reports whether this coordinator has peers to ask over attested
// TLS (static or by gossip).
func (c *Coordinator) hasPeers() bool {
	return c.cfg.Issuer != nil && (len(c.cfg.Peers) > 0 || c.cfg.Members != nil)
}

// adoptLocked verifies the store's history with seed above floor and, if it
// holds, becomes ready with it. A history that does not verify stops the
// coordinator; a store that does not answer leaves the state as it was.
func (c *Coordinator) adoptLocked(ctx context.Context, seed keys.Seed, floor history.Floor) error {
	h, err := history.Load(ctx, c.st, seed, floor)
	if errors.Is(err, history.ErrEmpty) && floor.Generation == 0 {
		// Sealed before the first transition was written, then stopped: no mesh.
		os.Remove(filepath.Join(c.cfg.StateDir, sealedName))
		c.kek = nil
		c.update(func(v *view) { v.seed = nil })
		c.setState(api.StateWaiting, "")
		return nil
	}
	if err != nil {
		if history.Verdict(err) {
			c.setState(api.StateFailed, err.Error())
		}
		return err
	}
	mesh, firstUse := h.MeshID(), false
	switch want := c.view().mesh; {
	case want == "":
		firstUse = true
		c.log.Warn("trusting on first use: serving mesh "+mesh+"; start coordinators with --mesh-id "+mesh+" to pin it", "mesh", mesh)
	case want != mesh:
		c.setState(api.StateFailed, fmt.Sprintf("the store holds mesh %s; this coordinator serves mesh %s", mesh, want))
		return fmt.Errorf("%w: the store holds another mesh", history.ErrTampered)
	}
	ca, err := issuer.LoadCA(seed.CAKey(h.Manifest.CAGen()), h.CAPEM)
	if err != nil {
		c.setState(api.StateFailed, err.Error())
		return err
	}
	alloc := c.view().alloc
	if alloc == nil {
		if alloc, err = ipam.NewAllocator(ctx, c.st, h.Manifest, seed.LeaseKey()); err != nil {
			return err
		}
		if c.cfg.Members != nil && c.cfg.API != "" {
			alloc.Spread(c.cfg.API)
		}
		defer close(c.allocated)
	}
	alloc.SetReserved(h.Manifest)
	c.update(func(v *view) {
		v.seed, v.hist, v.ca, v.alloc = &seed, h, ca, alloc
		v.firstUse = v.firstUse || firstUse
		v.mesh = mesh
	})
	if h.Floor() != floor || firstUse {
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
// KEK (unlocked by a peer, see takeSeed) there is nothing it may write.
func (c *Coordinator) persistLocked() error {
	v := c.view()
	if c.kek == nil || v.seed == nil {
		return nil
	}
	floor := history.Floor{}
	if v.hist != nil {
		floor = v.hist.Floor()
	}
	raw, err := json.Marshal(sealedState{Seed: v.seed[:], Floor: floor, MeshID: v.mesh})
	if err != nil {
		return err
	}
	return seal.WriteFile(c.cfg.StateDir, sealedName, raw, c.kek)
}

// newKEK picks the KEK for fresh sealed state: the TEE's key, or a new
// unlock key whose text is returned for the caller to hand out once.
func (c *Coordinator) newKEK() (*seal.KEK, string, error) {
	if c.cfg.SealingKey != nil {
		k, err := seal.NewKEK("tee", c.cfg.SealingKey)
		return k, "", err
	}
	return seal.NewUnlockKey()
}

// Run starts the coordinator (retrying a store it cannot reach), then
// re-verifies the store whenever it changes (and every 30 s in case a change
// notification is lost) until ctx ends. A store that stops verifying stops
// the coordinator; a newer valid history (another coordinator's update) is
// adopted.
func (c *Coordinator) Run(ctx context.Context) {
	fails := retry.New(c.log, "connecting to store "+c.cfg.StoreAddr, retry.DefaultBackoff)
	for {
		err := c.Start(ctx)
		if err == nil {
			fails.Succeeded()
			break
		}
		if !retry.Sleep(ctx, fails.Failed(err, "store", c.cfg.StoreAddr)) {
			return
		}
	}
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
			c.confirmFresh(ctx)
			if v := c.view(); v.seed == nil || v.hist == nil || !c.peers.Ahead(*v.seed, v.hist.Generation(), v.hist.Head) {
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
			go c.view().alloc.Follow(ctx, leasePoll, func(key string, err error) {
				c.log.Warn("lease record does not decode; left out of status", "key", key, "err", err)
			})
			continue
		case <-t.C:
		case <-peers.C:
			c.tryPeers(ctx)
			c.confirmFresh(ctx)
			continue
		}
		c.Recheck(ctx)
	}
}

// State is the coordinator's state (api.State*).
func (c *Coordinator) State() string { return c.view().state }

// Ready reports whether the coordinator can enrol.
func (c *Coordinator) Ready() bool { return c.view().serving() }

// Readiness is nil when the coordinator can enrol, else its state and why.
func (c *Coordinator) Readiness() error {
	v := c.view()
	switch {
	case v.serving():
		return nil
	case v.msg != "":
		return fmt.Errorf("%s: %s", v.state, v.msg)
	}
	return errors.New(v.state)
}

// MeshID is the ID of the mesh this coordinator serves, or was started for
// ("" before it knows one).
func (c *Coordinator) MeshID() string { return c.view().mesh }

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
	v := c.view()
	m := api.Member{API: c.cfg.API, State: v.state, Version: c.cfg.Version}
	if v.hist != nil {
		m.Generation, m.Head = v.hist.Generation(), v.hist.Head
	}
	if v.seed != nil {
		m.Vouch = cluster.Vouch(*v.seed, m)
	}
	return m
}

// realTEE reports whether this coordinator attests with a hardware TEE.
func (c *Coordinator) realTEE() bool {
	return c.cfg.Issuer != nil && c.cfg.Issuer.Platform() != attest.PlatformSimulated
}
