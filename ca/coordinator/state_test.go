package coordinator_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/seal"
)

// update signs raw as the successor of the current head.
func (h *harness) update(t *testing.T, raw string, key ed25519.PrivateKey, parent string) (*api.ManifestResponse, error) {
	t.Helper()
	req, err := owner.Request([]byte(raw), parent, key)
	if err != nil {
		t.Fatal(err)
	}
	return h.client.SetManifest(context.Background(), req)
}

func TestRestartIsLockedUntilUnlocked(t *testing.T) {
	ctx := context.Background()
	d := newDirs(t)
	h := newHarness(t, d, nil)
	created := h.create(t, testManifest(webDev.RootFingerprint()))
	first, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}

	h2 := newHarness(t, d, nil)
	if st := h2.c.Status(); st.State != api.StateLocked {
		t.Fatalf("restarted coordinator is %s, want locked", st.State)
	}
	if _, err := h2.client.Nonce(ctx); err == nil {
		t.Fatal("a locked coordinator issued a nonce")
	}
	_, otherText, _ := seal.NewUnlockKey()
	if _, err := h2.client.Unlock(ctx, otherText); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("unlock with a wrong key: %v", err)
	}
	if _, err := h2.client.Unlock(ctx, "SMUK1-short"); err == nil || !strings.Contains(err.Error(), "not an unlock key") {
		t.Fatalf("unlock with garbage: %v", err)
	}
	st, err := h2.client.Unlock(ctx, created.UnlockKey)
	if err != nil {
		t.Fatal(err)
	}
	// The same mesh: same CA (derived from the seed), same history, leases kept.
	if st.State != api.StateReady || st.CAFingerprint != created.Status.CAFingerprint || st.Head != created.Status.Head {
		t.Fatalf("after unlock: %+v, want the CA and head of %+v", st, created.Status)
	}
	if len(st.Hosts) != 1 || st.Hosts[0].IP != strings.Split(first.IP, "/")[0] {
		t.Fatalf("leases after restart: %+v", st.Hosts)
	}
	second, err := enrol.Workload(ctx, h2.client, webDev, api.Workload{Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if second.IP == first.IP || second.CA != first.CA {
		t.Fatalf("after restart: IP %s (first %s), same CA %v", second.IP, first.IP, second.CA == first.CA)
	}
}

func TestTEESealedRestartNeedsNoKey(t *testing.T) {
	d := newDirs(t)
	key, err := webDev.SealingKey()
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, d, key)
	created := h.create(t, testManifest(webDev.RootFingerprint()))
	if created.UnlockKey != "" {
		t.Fatal("a TEE-sealed coordinator handed out an unlock key")
	}
	if st := newHarness(t, d, key).c.Status(); st.State != api.StateReady || st.CAFingerprint != created.Status.CAFingerprint {
		t.Fatalf("restart with the same TEE key: %+v", st)
	}
	// Another image on the same chip derives another key and cannot open it.
	otherKey, _ := dbDev.SealingKey()
	if st := newHarness(t, d, otherKey).c.Status(); st.State != api.StateFailed || !strings.Contains(st.Message, "another image or chip") {
		t.Fatalf("restart with another measurement's key: %+v", st)
	}
}

func TestInvariantF_OwnerSignedUpdates(t *testing.T) {
	ctx := context.Background()
	h := readyHarness(t)
	base := testManifest(webDev.RootFingerprint())
	head := h.c.Status().Head
	next := strings.Replace(base, `"certificateLifetime": "1h"`, `"certificateLifetime": "2h"`, 1)
	stranger, _, _, _ := owner.NewOwnerKey()

	tests := []struct {
		name   string
		raw    string
		key    ed25519.PrivateKey
		parent string
		want   string
	}{
		{"no parent", next, ownerKey, "", "the mesh exists"},
		{"stale parent", next, ownerKey, strings.Repeat("0", 64), "no longer the latest"},
		{"not an owner", next, stranger, head, "not an owner"},
		{"network change", strings.Replace(strings.Replace(base, "10.42.0.0/24", "10.43.0.0/24", 1), "10.42.0.1", "10.43.0.1", 1), ownerKey, head, "networks cannot change"},
		{"seed-share owners are fixed", strings.Replace(base, sharePub(), ownerPub(), 1), ownerKey, head, "seedShareOwners"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.update(t, tt.raw, tt.key, tt.parent)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("update error = %v, want %q", err, tt.want)
			}
			if st := h.c.Status(); st.Generation != 1 || st.Head != head {
				t.Fatalf("a refused update moved the mesh to generation %d", st.Generation)
			}
		})
	}
	// Unsigned: the signature is over another manifest.
	req, _ := owner.Request([]byte(base), head, ownerKey)
	req.Manifest = []byte(next)
	if _, err := h.client.SetManifest(ctx, req); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("signature over another manifest: %v", err)
	}

	resp, err := h.update(t, next, ownerKey, head)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status.Generation != 2 {
		t.Fatalf("generation after update = %d", resp.Status.Generation)
	}
	// The same update again is answered as applied and changes nothing
	// (TestUpdateRetryIsIdempotent); another from the same parent is stale:
	// no lost update.
	if again, err := h.update(t, next, ownerKey, head); err != nil || !again.Replayed || again.Status.Generation != 2 {
		t.Fatalf("replayed update: %+v, %v", again, err)
	}
	if _, err := h.update(t, strings.Replace(next, `"2h"`, `"3h"`, 1), ownerKey, head); err == nil || !strings.Contains(err.Error(), "no longer the latest") {
		t.Fatalf("another update from the old head: %v", err)
	}
	e, err := enrol.Workload(ctx, h.client, webDev, api.Workload{})
	if err != nil {
		t.Fatal(err)
	}
	if life := e.NotAfter.Sub(h.clock.now()); life < 110*60e9 {
		t.Fatalf("certificate lifetime %s after the update to 2h", life)
	}
	hist, err := h.client.History(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Head != head || hist[1].Head != resp.Status.Head || hist[1].Signer != "alice" {
		t.Fatalf("history = %+v", hist)
	}
}

func TestTamperedStoreStopsServing(t *testing.T) {
	ctx := context.Background()
	t.Run("at runtime", func(t *testing.T) {
		d := newDirs(t)
		h := newHarness(t, d, nil)
		h.create(t, testManifest(webDev.RootFingerprint()))
		p := filepath.Join(d.store, "latest")
		b, _ := os.ReadFile(p)
		b[len(b)-3] ^= 1
		os.WriteFile(p, b, 0o600)
		h.c.Recheck(ctx)
		st := h.c.Status()
		if st.State != api.StateFailed || !strings.Contains(st.Message, "does not verify") {
			t.Fatalf("after tampering: %s %q", st.State, st.Message)
		}
		if _, err := h.client.Nonce(ctx); err == nil {
			t.Fatal("a failed coordinator issued a nonce")
		}
		resp, _ := http.Get(h.srv.URL + "/readyz")
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d", resp.StatusCode)
		}
	})
	t.Run("rolled back while stopped", func(t *testing.T) {
		d := newDirs(t)
		h := newHarness(t, d, nil)
		created := h.create(t, testManifest(webDev.RootFingerprint()))
		old, _ := os.ReadFile(filepath.Join(d.store, "latest"))
		next := strings.Replace(testManifest(webDev.RootFingerprint()), `"1h"`, `"3h"`, 1)
		if _, err := h.update(t, next, ownerKey, created.Status.Head); err != nil {
			t.Fatal(err)
		}
		// The store's operator restores generation 1: validly signed, but older
		// than what this coordinator sealed as seen.
		os.WriteFile(filepath.Join(d.store, "latest"), old, 0o600)
		h2 := newHarness(t, d, nil)
		st, err := h2.client.Unlock(ctx, created.UnlockKey)
		if err == nil || h2.c.Status().State != api.StateFailed {
			t.Fatalf("unlock over a rolled-back store: %v, %+v", err, st)
		}
		if msg := h2.c.Status().Message; !strings.Contains(msg, "rolled back") || !strings.Contains(msg, "generation 2 was already seen") {
			t.Fatalf("message %q", msg)
		}
	})
}

func TestRotateUnlockKey(t *testing.T) {
	ctx := context.Background()
	d := newDirs(t)
	h := newHarness(t, d, nil)
	created := h.create(t, testManifest(webDev.RootFingerprint()))
	if _, err := h.client.RotateUnlockKey(ctx, "SMUK1-"+strings.Repeat("A", 43)); err == nil {
		t.Fatal("rotation authorised by a wrong key")
	}
	next, err := h.client.RotateUnlockKey(ctx, created.UnlockKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newHarness(t, d, nil).client.Unlock(ctx, created.UnlockKey); err == nil {
		t.Fatal("the old unlock key still opens the state")
	}
	if _, err := newHarness(t, d, nil).client.Unlock(ctx, next); err != nil {
		t.Fatalf("the new unlock key: %v", err)
	}
}

// recoverWith runs what meshctl recover does.
func recoverWith(t *testing.T, h *harness, share []byte, force bool) (*api.ManifestResponse, error) {
	t.Helper()
	ctx := context.Background()
	seed, err := seal.OpenWith(shareKey, seal.SeedShareInfo, share)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := h.client.RecoveryKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := seal.SealTo(rk, seal.RecoveryInfo, seed)
	if err != nil {
		t.Fatal(err)
	}
	return h.client.Recover(ctx, &api.RecoverRequest{Seed: enc, Force: force})
}

func TestDisasterRecovery(t *testing.T) {
	ctx := context.Background()
	d := newDirs(t)
	h := newHarness(t, d, nil)
	created := h.create(t, testManifest(webDev.RootFingerprint()))
	share := created.SeedShares[0].Share
	if _, err := enrol.Workload(ctx, h.client, webDev, api.Workload{}); err != nil {
		t.Fatal(err)
	}
	if _, err := recoverWith(t, h, share, false); err == nil || !strings.Contains(err.Error(), "nothing to recover") {
		t.Fatalf("recover on a ready coordinator: %v", err)
	}

	// Every coordinator is gone: only the store remains.
	d2 := dirs{store: d.store, state: t.TempDir()}
	h2 := newHarness(t, d2, nil)
	if st := h2.c.Status(); st.State != api.StateRecovering {
		t.Fatalf("coordinator without sealed state over a full store: %s", st.State)
	}
	// A share of another mesh does not verify this history.
	other := newHarness(t, newDirs(t), nil).create(t, testManifest(webDev.RootFingerprint()))
	if _, err := recoverWith(t, h2, other.SeedShares[0].Share, false); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("recover with another mesh's share: %v", err)
	}
	resp, err := recoverWith(t, h2, share, false)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status.State != api.StateReady || resp.Status.CAFingerprint != created.Status.CAFingerprint || resp.Status.Head != created.Status.Head {
		t.Fatalf("recovered: %+v, want the CA and head of %+v", resp.Status, created.Status)
	}
	if resp.UnlockKey == "" || resp.UnlockKey == created.UnlockKey {
		t.Fatal("recovery did not seal under a new unlock key")
	}
	if _, err := enrol.Workload(ctx, h2.client, webDev, api.Workload{}); err != nil {
		t.Fatal(err)
	}
	// Lost unlock key: the sealed state cannot be opened; --force replaces it.
	h3 := newHarness(t, d2, nil)
	if _, err := recoverWith(t, h3, share, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("recover over sealed state without force: %v", err)
	}
	if _, err := recoverWith(t, h3, share, true); err != nil {
		t.Fatalf("recover --force: %v", err)
	}
}

// TestInvariantE_NoSecretAtRestOrInLogs runs the secret-handling flows and then looks for the
// seed, the keys derived from it and the unlock key, raw, hex and base64, in every
// file of the store and the state directory and in the logs.
func TestInvariantE_NoSecretAtRestOrInLogs(t *testing.T) {
	ctx := context.Background()
	d := newDirs(t)
	h := newHarness(t, d, nil)
	created := h.create(t, testManifest(webDev.RootFingerprint()))
	if _, err := enrol.Workload(ctx, h.client, webDev, api.Workload{}); err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(testManifest(webDev.RootFingerprint()), `"1h"`, `"2h"`, 1)
	if _, err := h.update(t, next, ownerKey, created.Status.Head); err != nil {
		t.Fatal(err)
	}
	rotated, err := h.client.RotateUnlockKey(ctx, created.UnlockKey)
	if err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, d, nil)
	h2.client.Unlock(ctx, "SMUK1-"+strings.Repeat("B", 43)) // a failed attempt, logged
	if _, err := h2.client.Unlock(ctx, rotated); err != nil {
		t.Fatal(err)
	}

	seedRaw, err := seal.OpenWith(shareKey, seal.SeedShareInfo, created.SeedShares[0].Share)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := keys.SeedFrom(seedRaw)
	secrets := map[string][]byte{
		"seed":        seed[:],
		"CA key":      seed.CAKey(1).Seed(),
		"history key": seed.HistoryKey().Seed(),
		"gossip key":  seed.GossipKey(),
		"lease key":   seed.LeaseKey(),
	}
	for name, text := range map[string]string{"first unlock key": created.UnlockKey, "rotated unlock key": rotated} {
		k := strings.TrimPrefix(text, "SMUK1-")
		raw, _ := base64.RawURLEncoding.DecodeString(k)
		secrets[name] = raw
		secrets[name+" (text)"] = []byte(k)
	}
	var haystacks []struct {
		name string
		data []byte
	}
	for _, dir := range []string{d.store, d.state} {
		filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				b, _ := os.ReadFile(p)
				haystacks = append(haystacks, struct {
					name string
					data []byte
				}{p, b})
			}
			return nil
		})
	}
	haystacks = append(haystacks, struct {
		name string
		data []byte
	}{"logs", append(h.logs.Bytes(), h2.logs.Bytes()...)})
	if len(haystacks) < 6 {
		t.Fatalf("only %d files to search: the test is not looking where it should", len(haystacks))
	}
	for name, s := range secrets {
		forms := [][]byte{s, []byte(hex.EncodeToString(s)), []byte(base64.StdEncoding.EncodeToString(s)),
			[]byte(base64.RawStdEncoding.EncodeToString(s)), []byte(base64.URLEncoding.EncodeToString(s)), []byte(base64.RawURLEncoding.EncodeToString(s))}
		for _, hs := range haystacks {
			for _, f := range forms {
				if bytes.Contains(hs.data, f) {
					t.Errorf("the %s appears in %s", name, hs.name)
				}
			}
		}
	}
}

// Finding 11 of the attack review: anyone who reached a coordinator waiting
// for its first manifest created the mesh. Deployed with the owners' keys,
// it creates the mesh only for a manifest one of them signed.
func TestPinnedOwnersCreateTheMesh(t *testing.T) {
	stranger, _, _, _ := owner.NewOwnerKey()
	h := newHarnessWith(t, newDirs(t), nil, func(c *coordinator.Config) {
		c.Owners = []ed25519.PublicKey{ownerKey.Public().(ed25519.PublicKey)}
	})
	// The stranger's manifest names the stranger as its owner: valid, and
	// signed by an owner of itself, but not by a key the coordinator pins.
	raw := strings.Replace(testManifest(webDev.RootFingerprint()), ownerPub(),
		base64.StdEncoding.EncodeToString(stranger.Public().(ed25519.PublicKey)), 1)
	req, err := owner.Request([]byte(raw), "", stranger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.SetManifest(context.Background(), req); err == nil || !strings.Contains(err.Error(), "--owner-key") {
		t.Fatalf("a mesh created by a key the coordinator does not pin: %v", err)
	}
	if st := h.c.Status(); st.State != api.StateWaiting {
		t.Fatalf("after the stranger's manifest: %s", st.State)
	}
	h.create(t, testManifest(webDev.RootFingerprint()))
	if st := h.c.Status(); st.State != api.StateReady {
		t.Fatalf("after the owner's manifest: %s", st.State)
	}
}
