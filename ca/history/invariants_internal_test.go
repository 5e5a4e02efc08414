package history

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

// These tests forge what only a holder of the seed could write (a
// compromised coordinator, or the store together with a leaked history
// key): each passes only while Load checks what its name says. Deliberately
// removing the check made no test fail before them (the attack review's
// mutations).

type forge struct {
	st    store.Store
	seed  keys.Seed
	owner ed25519.PrivateKey
	cur   *State
}

func manifestFor(t *testing.T, owner ed25519.PublicKey, shareOwner []byte, lifetime string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse([]byte(fmt.Sprintf(`{"version": 1, "networks": ["10.42.0.0/16"], "certificateLifetime": %q,
 "roles": [{"name": "web", "groups": ["web"], "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}],
 "lighthouses": [{"name": "lh", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh", "sha256": %q}],
 "owners": [{"name": "alice", "key": %q}], "seedShareOwners": [{"name": "bob", "key": %q}]}`,
		lifetime, strings.Repeat("a", 96), strings.Repeat("b", 64), strings.Repeat("c", 64),
		base64.StdEncoding.EncodeToString(owner), base64.StdEncoding.EncodeToString(shareOwner))))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newForge(t *testing.T) (*forge, []byte) {
	t.Helper()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seed, err := keys.NewSeed()
	if err != nil {
		t.Fatal(err)
	}
	_, owner, _ := ed25519.GenerateKey(rand.Reader)
	share, _ := ecdh.X25519().GenerateKey(rand.Reader)
	m := manifestFor(t, owner.Public().(ed25519.PublicKey), share.PublicKey().Bytes(), "1h")
	cur, err := Create(context.Background(), st, seed, m, Sign("", m, owner), []byte("CA PEM"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &forge{st: st, seed: seed, owner: owner, cur: cur}, share.PublicKey().Bytes()
}

// TestInvariantD_StoredTransitionSignedByNonOwner: a transition in the store
// whose owner signature is not an owner's, behind a latest pointer signed
// with the seed, does not verify.
func TestInvariantD_StoredTransitionSignedByNonOwner(t *testing.T) {
	f, share := newForge(t)
	_, mallory, _ := ed25519.GenerateKey(rand.Reader)
	m2 := manifestFor(t, f.owner.Public().(ed25519.PublicKey), share, "2h")
	u := Sign(f.cur.Head, m2, mallory)
	if _, err := write(context.Background(), f.st, f.seed, f.cur, m2, manifest.PublicKey{Name: "mallory"}, u, f.cur.CAPEM, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), f.st, f.seed, Floor{}); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "not an owner") {
		t.Fatalf("a transition signed by a non-owner: %v", err)
	}
}

// TestInvariantG_SeedShareOwnersNeverChange: a transition that changes the
// seed-share owners, even one signed by a real owner, does not verify in
// the store (the recovery keys are fixed by the first manifest).
func TestInvariantG_SeedShareOwnersNeverChange(t *testing.T) {
	f, _ := newForge(t)
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	m2 := manifestFor(t, f.owner.Public().(ed25519.PublicKey), other.PublicKey().Bytes(), "1h")
	owner, _ := f.cur.Manifest.Owner(f.owner.Public().(ed25519.PublicKey))
	if _, err := write(context.Background(), f.st, f.seed, f.cur, m2, owner, Sign(f.cur.Head, m2, f.owner), f.cur.CAPEM, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), f.st, f.seed, Floor{}); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "seedShareOwners") {
		t.Fatalf("a transition changing the seed-share owners: %v", err)
	}
}

// TestInvariantD_CACertificateHashChecked: the CA certificate the head
// names by hash is checked against it; a store that serves another does not
// verify.
func TestInvariantD_CACertificateHashChecked(t *testing.T) {
	f, _ := newForge(t)
	head := f.cur.Chain[len(f.cur.Chain)-1]
	if err := f.st.Put(context.Background(), caKey(head.CA), []byte("another CA PEM")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), f.st, f.seed, Floor{}); !errors.Is(err, ErrTampered) {
		t.Fatalf("another CA certificate under the head's CA hash: %v", err)
	}
}
