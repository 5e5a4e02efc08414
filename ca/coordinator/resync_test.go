package coordinator_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/test/tools"
)

// gossip stands in for the cluster: what members announce, settable.
type gossip struct {
	mu sync.Mutex
	ms []api.Member
}

func (g *gossip) set(ms ...api.Member) { g.mu.Lock(); g.ms = ms; g.mu.Unlock() }
func (g *gossip) get() []api.Member    { g.mu.Lock(); defer g.mu.Unlock(); return g.ms }

// member runs a coordinator of p's mesh that sees g as its cluster.
func (p *peerSetup) member(t *testing.T, stateDir string, g *gossip) (*coordinator.Coordinator, string) {
	t.Helper()
	st, err := store.OpenFile(p.store)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := p.coordDev.SealingKey()
	c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: stateDir,
		SealingKey: key, Issuer: p.coordDev, Members: g.get, API: "https://" + filepath.Base(stateDir)})
	if err != nil {
		t.Fatal(err)
	}
	return c, tools.ServeAttested(t, p.coordDev, c.Handler())
}

func (p *peerSetup) update(t *testing.T, c *coordinator.Coordinator, lifetime string) {
	t.Helper()
	req, err := ownerRequest(strings.Replace(withCoordinators("sealmesh-coordinator"), `"1h"`, lifetime, 1), c.Status().Head)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetManifest(context.Background(), req); err != nil {
		t.Fatal(err)
	}
}

// Anti-rollback across the cluster. A running coordinator whose store is
// rolled back below what an attested peer runs refuses it, once gossip says a
// peer is ahead. One that restarts from a sealed state rolled back together
// with the store (both at generation 1, while A runs 2) verifies them, so it
// does not serve until an attested peer confirms its head (issue 24: before,
// it came up ready at the old generation with no warning); a peer that runs
// a newer one shows the rollback.
func TestStoreOlderThanAnAttestedPeer(t *testing.T) {
	ctx := context.Background()
	p := setupPeers(t)
	g := &gossip{}
	bState := t.TempDir()
	b, _ := p.member(t, bState, g)
	if err := b.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
		t.Fatal(err)
	}
	// B is at generation 1; A moves to 2; the store's operator puts 1 back.
	old, _ := os.ReadFile(filepath.Join(p.store, "latest"))
	p.update(t, p.a, `"2h"`)
	os.WriteFile(filepath.Join(p.store, "latest"), old, 0o600)

	// B restarts from its sealed state (generation 1) over the store at 1.
	b2, _ := p.member(t, bState, g)
	if st := b2.Status(); st.State != api.StateUnconfirmed || st.Generation != 1 || !st.FreshnessUnconfirmed {
		t.Fatalf("restarted from sealed state with peers: %s at %d", st.State, st.Generation)
	}
	b2.ConfirmFromPeers(ctx)
	// A gossip claim nobody confirms over attested TLS is not believed,
	// and does not confirm either.
	g.set(api.Member{Name: "liar", API: "https://127.0.0.1:1", State: api.StateReady, Generation: 9})
	b.Recheck(ctx)
	b2.ConfirmFromPeers(ctx)
	if st, st2 := b.Status(), b2.Status(); st.State != api.StateReady || st2.State != api.StateUnconfirmed {
		t.Fatalf("an unconfirmed gossip claim: running B %s (%s), restarted B %s (%s)", st.State, st.Message, st2.State, st2.Message)
	}
	// Announced as A, but not vouched for with the mesh's seed: not dialed.
	g.set(api.Member{Name: "a", API: p.aURL, State: api.StateReady, Generation: 2})
	b.Recheck(ctx)
	b2.ConfirmFromPeers(ctx)
	if st, st2 := b.Status(), b2.Status(); st.State != api.StateReady || st2.State != api.StateUnconfirmed {
		t.Fatalf("an unvouched announcement: running B %s (%s), restarted B %s (%s)", st.State, st.Message, st2.State, st2.Message)
	}
	g.set(p.a.Vouched(api.Member{Name: "a", API: p.aURL, State: api.StateReady, Generation: 2}))
	b.Recheck(ctx)
	if st := b.Status(); st.State != api.StateFailed || !strings.Contains(st.Message, "runs generation 2") {
		t.Fatalf("running B over a store older than attested A: %s: %s", st.State, st.Message)
	}
	b2.ConfirmFromPeers(ctx)
	if st := b2.Status(); st.State != api.StateFailed || !strings.Contains(st.Message, "rolled back") || !strings.Contains(st.Message, "runs generation 2") {
		t.Fatalf("restarted B, rolled back with its store, asking attested A: %s: %s", st.State, st.Message)
	}
}

// TestFreshnessAfterRestart: a coordinator restarted from its sealed state
// serves again once an attested peer at its head confirms it; a lone one
// serves but says its freshness is unconfirmed until an owner confirms the
// head (a statement for another head, or by a non-owner, is refused).
func TestFreshnessAfterRestart(t *testing.T) {
	ctx := context.Background()
	p := setupPeers(t)
	g := &gossip{}
	bState := t.TempDir()
	b, _ := p.member(t, bState, g)
	if err := b.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.State != api.StateReady || st.FreshnessUnconfirmed {
		t.Fatalf("recovered from a peer: %s, unconfirmed %v", st.State, st.FreshnessUnconfirmed)
	}
	b2, b2URL := p.member(t, bState, g)
	// A fresh replica may recover from unconfirmed b2 (else a cluster whose
	// only holder of the seed restarted could not come back), and is
	// unconfirmed too.
	fresh, _ := p.member(t, t.TempDir(), &gossip{})
	if err := fresh.RecoverFromPeers(ctx, []string{b2URL}); err != nil {
		t.Fatalf("recovery from an unconfirmed peer: %v", err)
	}
	if st := fresh.Status(); st.State != api.StateUnconfirmed || !st.FreshnessUnconfirmed {
		t.Fatalf("recovered from an unconfirmed peer: %s", st.State)
	}
	a := p.a.Status()
	g.set(p.a.Vouched(api.Member{Name: "a", API: p.aURL, State: a.State, Generation: a.Generation, Head: a.Head}))
	b2.ConfirmFromPeers(ctx)
	if st := b2.Status(); st.State != api.StateReady || st.FreshnessUnconfirmed {
		t.Fatalf("restarted, confirmed by attested A at the same head: %s (%s)", st.State, st.Message)
	}

	// A lone coordinator (no peers): serves, unconfirmed, until the owner says.
	st, err := store.OpenFile(p.store)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := p.coordDev.SealingKey()
	lone, err := coordinator.Open(ctx, coordinator.Config{Log: slog.New(slog.DiscardHandler), Store: st, StateDir: bState, SealingKey: key, Issuer: p.coordDev})
	if err != nil {
		t.Fatal(err)
	}
	s := lone.Status()
	if s.State != api.StateReady || !s.FreshnessUnconfirmed {
		t.Fatalf("lone coordinator restarted: %s, unconfirmed %v", s.State, s.FreshnessUnconfirmed)
	}
	other, _, _, _ := owner.NewOwnerKey()
	for _, bad := range []*api.OwnerProof{
		api.ProveOwner(ownerKey, api.PurposeFresh(strings.Repeat("0", 64)), time.Now()),
		api.ProveOwner(other, api.PurposeFresh(s.Head), time.Now()),
	} {
		if _, err := lone.ConfirmFresh(ctx, bad); !errors.Is(err, api.ErrRefused) {
			t.Fatalf("freshness statement %+v: %v, want refused", bad, err)
		}
	}
	if got, err := lone.ConfirmFresh(ctx, api.ProveOwner(ownerKey, api.PurposeFresh(s.Head), time.Now())); err != nil || got.FreshnessUnconfirmed {
		t.Fatalf("the owner's statement: %+v, %v", got, err)
	}
}

// A coordinator whose state is not an ancestor of the store's latest stops
// issuing, and re-syncs only to a head an attested ready peer runs.
func TestOffBranchResync(t *testing.T) {
	ctx := context.Background()
	p := setupPeers(t)
	g := &gossip{}
	bState := t.TempDir()
	b, bURL := p.member(t, bState, g)
	if err := b.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
		t.Fatal(err)
	}
	ga := &gossip{}
	a, _ := p.member(t, t.TempDir(), ga)
	if err := a.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
		t.Fatal(err)
	}
	// a moves to 2a; the store goes back to 1 and b (still at 1) writes 2b:
	// another branch, signed with the mesh's seed (as an operator's recovery
	// over an old store would).
	old, _ := os.ReadFile(filepath.Join(p.store, "latest"))
	p.update(t, a, `"2h"`)
	os.WriteFile(filepath.Join(p.store, "latest"), old, 0o600)
	p.update(t, b, `"3h"`)
	branch := b.Status().Head

	a.Recheck(ctx)
	if st := a.Status(); st.State != api.StateFailed || !strings.Contains(st.Message, "another branch") {
		t.Fatalf("a off the store's branch, no peer vouching: %s: %s", st.State, st.Message)
	}
	// A peer announced at another head does not count.
	ga.set(a.Vouched(api.Member{Name: "x", API: p.aURL, State: api.StateReady, Generation: 2}))
	a.Recheck(ctx)
	if st := a.Status(); st.State != api.StateFailed {
		t.Fatalf("a re-synced without a peer on the store's head: %s", st.State)
	}
	// An attested ready peer runs the store's latest: a re-syncs to it.
	ga.set(b.Vouched(api.Member{Name: "b", API: bURL, State: api.StateReady, Generation: 2, Head: branch}))
	a.Recheck(ctx)
	if st := a.Status(); st.State != api.StateReady || st.Head != branch {
		t.Fatalf("a after an attested peer vouched for %s: %s at %s: %s", branch[:12], st.State, st.Head, st.Message)
	}
}
