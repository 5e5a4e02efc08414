package coordinator_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/seal"
)

// TestThresholdSeedShares: with seedShareThreshold 2 of 3 owners, one share
// recovers nothing (the coordinator says one more is needed, and stays
// recovering), a corrupted share is refused by name, and any two shares
// recover the same CA and head.
func TestThresholdSeedShares(t *testing.T) {
	ctx := context.Background()
	devices(t)
	var keys []*ecdh.PrivateKey
	var owners []any
	for _, name := range []string{"bob", "carol", "dave"} {
		k, _, pub, err := owner.NewShareKey()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		owners = append(owners, map[string]string{"name": name, "key": pub})
	}
	var m map[string]any
	json.Unmarshal([]byte(testManifest(webDev.RootFingerprint())), &m)
	m["seedShareOwners"], m["seedShareThreshold"] = owners, 2
	raw, _ := json.Marshal(m)
	d := newDirs(t)
	created := newHarness(t, d, nil).create(t, string(raw))
	if len(created.SeedShares) != 3 {
		t.Fatalf("%d seed shares, want 3", len(created.SeedShares))
	}
	opened := make([][]byte, 3)
	for i, s := range created.SeedShares {
		b, err := seal.OpenWith(keys[i], seal.SeedShareInfo, s.Share)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 32 {
			t.Fatalf("owner %s got the whole seed", s.Owner)
		}
		opened[i] = b
	}
	send := func(h *harness, share []byte) (*api.ManifestResponse, error) {
		t.Helper()
		rk, err := h.client.RecoveryKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := seal.SealTo(rk, seal.RecoveryInfo, share)
		if err != nil {
			t.Fatal(err)
		}
		return h.client.Recover(ctx, &api.RecoverRequest{Share: enc})
	}

	for _, pair := range [][2]int{{0, 2}, {1, 2}} {
		// Every coordinator is gone: only the store remains.
		h := newHarness(t, dirs{store: d.store, state: t.TempDir()}, nil)
		resp, err := send(h, opened[pair[0]])
		if err != nil || resp.SharesNeeded != 1 || resp.Status.State != api.StateRecovering {
			t.Fatalf("one share: %+v, %v; want one more needed, still recovering", resp, err)
		}
		// The same share again counts once.
		if resp, err := send(h, opened[pair[0]]); err != nil || resp.SharesNeeded != 1 {
			t.Fatalf("the same share again: %+v, %v", resp, err)
		}
		bad := bytes.Clone(opened[pair[1]])
		bad[len(bad)-3] ^= 1
		if _, err := send(h, bad); !errors.Is(err, api.ErrRefused) || !strings.Contains(err.Error(), "not one of this sharing's") {
			t.Fatalf("a corrupted share: %v, want refused", err)
		}
		resp, err = send(h, opened[pair[1]])
		if err != nil {
			t.Fatal(err)
		}
		if resp.SharesNeeded != 0 || resp.Status.State != api.StateReady || resp.Status.CAFingerprint != created.Status.CAFingerprint || resp.Status.Head != created.Status.Head {
			t.Fatalf("shares %v: %+v, want the CA and head of %+v", pair, resp.Status, created.Status)
		}
	}
	// A share is not a seed, and a whole seed's request is not a share.
	h := newHarness(t, dirs{store: d.store, state: t.TempDir()}, nil)
	rk, _ := h.client.RecoveryKey(ctx)
	enc, _ := seal.SealTo(rk, seal.RecoveryInfo, opened[0])
	if _, err := h.client.Recover(ctx, &api.RecoverRequest{Seed: enc}); err == nil {
		t.Fatal("a share sent as the seed recovered the mesh")
	}
}
