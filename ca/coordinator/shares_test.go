package coordinator_test

import (
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/owner"
)

// TestLostCreateAnswerDoesNotBrickTheMesh is finding 8: in unlock-key mode
// the unlock key and the seed shares were only in the answer to the first
// manifest. Lose it, restart, and the mesh stayed locked for good. Now the
// same signed request may be sent again (it changes nothing and returns the
// shares), and an owner can fetch the shares from the store even from a
// locked coordinator, then recover with one.
func TestLostCreateAnswerDoesNotBrickTheMesh(t *testing.T) {
	ctx := context.Background()
	d := newDirs(t)
	h := newHarness(t, d, nil)
	raw := testManifest(webDev.RootFingerprint())
	req, err := owner.Request([]byte(raw), "", ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	first, err := h.client.SetManifest(ctx, req) // its answer is "lost"
	if err != nil {
		t.Fatal(err)
	}

	// The same request again: the same mesh, its shares, no new unlock key.
	again, err := h.client.SetManifest(ctx, req)
	if err != nil {
		t.Fatalf("the create request sent again: %v", err)
	}
	if !again.Replayed || again.UnlockKey != "" || again.Status.Generation != 1 || again.Status.Head != first.Status.Head {
		t.Fatalf("replayed create: replayed=%v unlockKey=%q generation %d head %s, want the first's head %s and no unlock key",
			again.Replayed, again.UnlockKey, again.Status.Generation, again.Status.Head, first.Status.Head)
	}
	if len(again.SeedShares) != 1 || string(again.SeedShares[0].Share) != string(first.SeedShares[0].Share) {
		t.Fatalf("replayed create returned shares %+v, want the first's", again.SeedShares)
	}
	// Another first manifest is still a conflict: replay is of the same request only.
	other, _ := owner.Request([]byte(strings.Replace(raw, `"1h"`, `"2h"`, 1)), "", ownerKey)
	if _, err := h.client.SetManifest(ctx, other); err == nil || !strings.Contains(err.Error(), "the mesh exists") {
		t.Fatalf("a different create on a ready mesh: %v", err)
	}

	// Restart: locked, and the unlock key is gone.
	h2 := newHarness(t, d, nil)
	if st := h2.c.Status(); st.State != api.StateLocked {
		t.Fatalf("restarted coordinator is %s, want locked", st.State)
	}
	stranger, _, _, _ := owner.NewOwnerKey()
	now := h2.clock.now()
	for _, c := range []struct {
		name  string
		proof *api.OwnerProof
		want  string
	}{
		{"no proof", &api.OwnerProof{}, "owner proof"},
		{"not an owner", api.ProveOwner(stranger, api.PurposeSeedShares, now), "not an owner"},
		{"other purpose", api.ProveOwner(ownerKey, api.PurposeHosts, now), "made for"},
		{"too old", api.ProveOwner(ownerKey, api.PurposeSeedShares, now.Add(-api.ProofWindow-time.Minute)), "from the coordinator's clock"},
		{"forged", func() *api.OwnerProof {
			p := api.ProveOwner(stranger, api.PurposeSeedShares, now)
			p.SignerKey = ownerKey.Public().(ed25519.PublicKey)
			return p
		}(), "does not verify"},
	} {
		if _, err := h2.client.SeedShares(ctx, c.proof); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	got, err := h2.client.SeedShares(ctx, api.ProveOwner(ownerKey, api.PurposeSeedShares, now))
	if err != nil {
		t.Fatalf("owner fetching the shares from a locked coordinator: %v", err)
	}
	if len(got.SeedShares) != 1 || got.SeedShares[0].Owner != "bob" || string(got.SeedShares[0].Share) != string(first.SeedShares[0].Share) {
		t.Fatalf("fetched shares %+v, want bob's from the create", got.SeedShares)
	}
	// With it, the seed-share owner brings the mesh back.
	resp, err := recoverWith(t, h2, got.SeedShares[0].Share, true)
	if err != nil {
		t.Fatalf("recover --force with the fetched share: %v", err)
	}
	if resp.Status.State != api.StateReady || resp.Status.Head != first.Status.Head || resp.UnlockKey == "" {
		t.Fatalf("recovered: %+v (unlock key given: %v), want ready at %s", resp.Status, resp.UnlockKey != "", first.Status.Head)
	}
	// And a ready coordinator serves them from the verified history.
	if got, err := h2.client.SeedShares(ctx, api.ProveOwner(ownerKey, api.PurposeSeedShares, h2.clock.now())); err != nil || len(got.SeedShares) != 1 {
		t.Fatalf("shares from a ready coordinator: %+v, %v", got, err)
	}
}

// TestUpdateRetryIsIdempotent: a manifest update whose answer was lost may be
// sent again, to the same coordinator or another; it is answered as applied
// and makes no second transition. A different update naming the same, now
// stale, parent is still refused (invariant F).
func TestUpdateRetryIsIdempotent(t *testing.T) {
	ctx := context.Background()
	h := readyHarness(t)
	st := h.c.Status()
	next := strings.Replace(testManifest(webDev.RootFingerprint()), `"1h"`, `"2h"`, 1)
	req, err := owner.Request([]byte(next), st.Head, ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	applied, err := h.client.SetManifest(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.client.SetManifest(ctx, req)
	if err != nil {
		t.Fatalf("the update sent again: %v", err)
	}
	if !again.Replayed || again.Status.Generation != 2 || again.Status.Head != applied.Status.Head || len(again.SeedShares) != 0 {
		t.Fatalf("replayed update: %+v (replayed %v), want generation 2 at %s", again.Status, again.Replayed, applied.Status.Head)
	}
	other, _ := owner.Request([]byte(strings.Replace(next, `"2h"`, `"3h"`, 1)), st.Head, ownerKey)
	if _, err := h.client.SetManifest(ctx, other); err == nil || !strings.Contains(err.Error(), "the latest is") {
		t.Fatalf("another update from the stale parent: %v", err)
	}
}
