package history_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

const m96 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const fp64 = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func mf(t testing.TB, lifetime string, owners ...ed25519.PrivateKey) *manifest.Manifest {
	t.Helper()
	var os []string
	for i, k := range owners {
		os = append(os, fmt.Sprintf(`{"name": "owner%d", "key": %q}`, i, base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))))
	}
	m, err := manifest.Parse([]byte(fmt.Sprintf(`{"version": 1, "networks": ["10.42.0.0/16"], "certificateLifetime": %q,
 "roles": [{"name": "web", "groups": ["web"], "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}],
 "lighthouses": [{"name": "lh", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh", "sha256": %q}],
 "owners": [%s]}`, lifetime, m96, fp64, fp64, strings.Join(os, ","))))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func key(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type fixture struct {
	st       *store.File
	seed     keys.Seed
	owner    ed25519.PrivateKey
	s        *history.State
	latestAt map[int][]byte // the store's latest pointer at each generation
}

// grow makes a history of n generations.
func grow(t testing.TB, n int) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := keys.NewSeed()
	owner := key(t)
	m := mf(t, "1h", owner)
	s, err := history.Create(ctx, st, seed, m, history.Sign("", m, owner), []byte("CA PEM"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	at := map[int][]byte{}
	at[1], _, _ = st.Latest(ctx)
	for i := 2; i <= n; i++ {
		m := mf(t, fmt.Sprintf("%dm", 60+i), owner)
		if s, err = history.Append(ctx, st, seed, s, m, history.Sign(s.Head, m, owner), time.Now()); err != nil {
			t.Fatal(err)
		}
		at[i], _, _ = st.Latest(ctx)
	}
	return &fixture{st: st, seed: seed, owner: owner, s: s, latestAt: at}
}

func TestCreateAppendLoad(t *testing.T) {
	f := grow(t, 5)
	got, err := history.Load(context.Background(), f.st, f.seed, history.Floor{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Generation() != 5 || got.Head != f.s.Head || got.Manifest.CertificateLifetime != "65m" || len(got.Chain) != 5 {
		t.Fatalf("loaded generation %d head %s lifetime %s", got.Generation(), got.Head, got.Manifest.CertificateLifetime)
	}
	if _, err := history.Load(context.Background(), f.st, f.seed, f.s.Floor()); err != nil {
		t.Fatalf("load at its own floor: %v", err)
	}
}

func TestUpdateRules(t *testing.T) {
	ctx := context.Background()
	f := grow(t, 2)
	other := key(t)
	next := mf(t, "2h", f.owner)
	tests := []struct {
		name string
		m    *manifest.Manifest
		u    history.Update
		want error
	}{
		{"stale parent", next, history.Sign(f.s.Chain[0].Prev+"00", next, f.owner), history.ErrStale},
		{"parent one behind", next, history.Sign(f.s.Chain[1].Prev, next, f.owner), history.ErrStale},
		{"key of no owner", next, history.Sign(f.s.Head, next, other), history.ErrUnauthorized},
		{"unsigned", next, history.Update{Parent: f.s.Head, SignerKey: f.owner.Public().(ed25519.PublicKey)}, history.ErrUnauthorized},
		{"signature for another manifest", next, history.Sign(f.s.Head, mf(t, "3h", f.owner), f.owner), history.ErrUnauthorized},
		// A manifest naming a new owner must still be signed by a current one.
		{"self-appointed owner", mf(t, "1h", other), history.Sign(f.s.Head, mf(t, "1h", other), other), history.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, before, _ := f.st.Latest(ctx)
			_, err := history.Append(ctx, f.st, f.seed, f.s, tt.m, tt.u, time.Now())
			if !errors.Is(err, tt.want) {
				t.Fatalf("Append error = %v, want %v", err, tt.want)
			}
			if _, after, _ := f.st.Latest(ctx); after != before {
				t.Fatal("a refused update changed the latest pointer")
			}
		})
	}
	// An owner may hand over to a new owner.
	handover := mf(t, "1h", other)
	s, err := history.Append(ctx, f.st, f.seed, f.s, handover, history.Sign(f.s.Head, handover, f.owner), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := history.Append(ctx, f.st, f.seed, s, next, history.Sign(s.Head, next, f.owner), time.Now()); !errors.Is(err, history.ErrUnauthorized) {
		t.Fatalf("the old owner after handover: %v, want ErrUnauthorized", err)
	}
	// Two writers from the same parent: the second loses with ErrStale.
	a, b := mf(t, "5h", other), mf(t, "6h", other)
	if _, err := history.Append(ctx, f.st, f.seed, s, a, history.Sign(s.Head, a, other), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := history.Append(ctx, f.st, f.seed, s, b, history.Sign(s.Head, b, other), time.Now()); !errors.Is(err, history.ErrStale) {
		t.Fatalf("lost update: %v, want ErrStale", err)
	}
	// The first manifest must be signed by one of its own owners.
	st2, _ := store.OpenFile(t.TempDir())
	m := mf(t, "1h", f.owner)
	if _, err := history.Create(ctx, st2, f.seed, m, history.Sign("", m, other), nil, nil, time.Now()); !errors.Is(err, history.ErrUnauthorized) {
		t.Fatalf("genesis signed by a stranger: %v", err)
	}
	if _, err := history.Create(ctx, f.st, f.seed, m, history.Sign("", m, f.owner), nil, nil, time.Now()); !errors.Is(err, history.ErrStale) {
		t.Fatalf("second genesis on a full store: %v, want ErrStale", err)
	}
}

// files lists the store's object files of one kind.
func files(t *testing.T, f *fixture, prefix string) []string {
	t.Helper()
	ents, err := os.ReadDir(f.st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, filepath.Join(f.st.Dir(), e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

func TestTamperingIsDetected(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		tamper func(t *testing.T, f *fixture)
		floor  bool // load with the floor of the untampered state
		want   error
		msg    string
	}{
		{"flipped byte in a transition", func(t *testing.T, f *fixture) {
			p := files(t, f, "transition-")[0]
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o600)
		}, false, history.ErrTampered, "does not match its hash"},
		{"flipped byte in the latest pointer", func(t *testing.T, f *fixture) {
			p := filepath.Join(f.st.Dir(), "latest")
			b, _ := os.ReadFile(p)
			b[len(b)-5] ^= 1
			os.WriteFile(p, b, 0o600)
		}, false, history.ErrTampered, ""},
		{"replaced manifest", func(t *testing.T, f *fixture) {
			p := files(t, f, "manifest-")[0]
			os.WriteFile(p, mf(t, "9h", f.owner).Canonical(), 0o600)
		}, false, history.ErrTampered, "does not match its hash"},
		{"truncated: a transition deleted", func(t *testing.T, f *fixture) {
			os.Remove(files(t, f, "transition-")[1])
		}, false, history.ErrTampered, "not found"},
		{"reordered: two transitions swapped", func(t *testing.T, f *fixture) {
			ts := files(t, f, "transition-")
			a, _ := os.ReadFile(ts[0])
			b, _ := os.ReadFile(ts[1])
			os.WriteFile(ts[0], b, 0o600)
			os.WriteFile(ts[1], a, 0o600)
		}, false, history.ErrTampered, "does not match its hash"},
		{"latest signed with another seed", func(t *testing.T, f *fixture) {
			other, _ := keys.NewSeed()
			m := mf(t, "7h", f.owner)
			// A forger who can write the store but lacks the seed.
			if _, err := history.Append(ctx, f.st, other, f.s, m, history.Sign(f.s.Head, m, f.owner), time.Now()); err != nil {
				t.Fatal(err)
			}
		}, false, history.ErrTampered, "does not verify with this mesh's seed"},
		{"emptied store", func(t *testing.T, f *fixture) {
			os.Remove(filepath.Join(f.st.Dir(), "latest"))
		}, true, history.ErrRollback, "the store is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := grow(t, 3)
			floor := history.Floor{}
			if tt.floor {
				floor = f.s.Floor()
			}
			tt.tamper(t, f)
			_, err := history.Load(ctx, f.st, f.seed, floor)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Load error = %v, want %v containing %q", err, tt.want, tt.msg)
			}
		})
	}
	t.Run("older valid chain restored, below the floor", func(t *testing.T) {
		f := grow(t, 3)
		old, _ := os.ReadFile(filepath.Join(f.st.Dir(), "latest"))
		m := mf(t, "8h", f.owner)
		s, err := history.Append(ctx, f.st, f.seed, f.s, m, history.Sign(f.s.Head, m, f.owner), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(f.st.Dir(), "latest"), old, 0o600)
		// Without a floor the old chain verifies: every piece of it is valid.
		// That is why the floor exists.
		if _, err := history.Load(ctx, f.st, f.seed, history.Floor{}); err != nil {
			t.Fatalf("old chain without floor: %v", err)
		}
		if _, err := history.Load(ctx, f.st, f.seed, s.Floor()); !errors.Is(err, history.ErrRollback) || !strings.Contains(err.Error(), "generation 4 was already seen") {
			t.Fatalf("Load with floor = %v, want ErrRollback", err)
		}
	})
	t.Run("another branch at the floor's generation", func(t *testing.T) {
		f := grow(t, 3)
		seen := f.s.Floor()
		// Put generation 2's genuine pointer back and write a different
		// generation 3 on it: every piece verifies, but it is not what was seen.
		os.WriteFile(filepath.Join(f.st.Dir(), "latest"), f.latestAt[2], 0o600)
		at2, err := history.Load(ctx, f.st, f.seed, history.Floor{})
		if err != nil {
			t.Fatal(err)
		}
		m := mf(t, "99m", f.owner)
		if _, err := history.Append(ctx, f.st, f.seed, at2, m, history.Sign(at2.Head, m, f.owner), time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := history.Load(ctx, f.st, f.seed, seen); !errors.Is(err, history.ErrRollback) || !strings.Contains(err.Error(), "another branch") {
			t.Fatalf("Load = %v, want ErrRollback on another branch", err)
		}
	})
}

// TestImmutableMesh: an owner may make the mesh final by setting a manifest
// without owners; after it no transition is accepted, not even one signed by
// a former owner, and the chain still verifies. A first manifest without
// owners has nobody to sign it.
func TestImmutableMesh(t *testing.T) {
	ctx := context.Background()
	f := grow(t, 2)
	final := mf(t, "1h")
	if !final.Immutable() {
		t.Fatal("a manifest without owners is not immutable")
	}
	s, err := history.Append(ctx, f.st, f.seed, f.s, final, history.Sign(f.s.Head, final, f.owner), time.Now())
	if err != nil {
		t.Fatalf("making the mesh final: %v", err)
	}
	for _, signer := range []ed25519.PrivateKey{f.owner, key(t)} {
		for _, next := range []*manifest.Manifest{mf(t, "2h", f.owner), mf(t, "2h")} {
			_, before, _ := f.st.Latest(ctx)
			if _, err := history.Append(ctx, f.st, f.seed, s, next, history.Sign(s.Head, next, signer), time.Now()); !errors.Is(err, history.ErrFinal) {
				t.Fatalf("a transition after the final manifest: %v, want ErrFinal", err)
			}
			if _, after, _ := f.st.Latest(ctx); after != before {
				t.Fatal("a refused transition changed the latest pointer")
			}
		}
	}
	loaded, err := history.Load(ctx, f.st, f.seed, history.Floor{})
	if err != nil || loaded.Head != s.Head || !loaded.Manifest.Immutable() {
		t.Fatalf("loading the immutable history: %v", err)
	}
	st2, _ := store.OpenFile(t.TempDir())
	if _, err := history.Create(ctx, st2, f.seed, final, history.Sign("", final, f.owner), nil, nil, time.Now()); !errors.Is(err, history.ErrUnauthorized) {
		t.Fatalf("a first manifest without owners: %v, want ErrUnauthorized", err)
	}
}

// TestUpdateThreshold: a manifest with updateThreshold 2 is replaced only
// with two distinct owners' signatures; a stranger's, or the same owner's
// twice, do not count; lowering the threshold needs the old one; a
// transition whose approval is stripped from the store no longer verifies.
func TestUpdateThreshold(t *testing.T) {
	ctx := context.Background()
	f := grow(t, 1)
	bob, carol, stranger := key(t), key(t), key(t)
	two := mf(t, "1h", f.owner, bob, carol)
	two.UpdateThreshold = 2
	s, err := history.Append(ctx, f.st, f.seed, f.s, two, history.Sign(f.s.Head, two, f.owner), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	next := mf(t, "2h", f.owner, bob, carol) // threshold back to 0: lowering it
	approve := func(k ed25519.PrivateKey) history.Approval {
		u := history.Sign(s.Head, next, k)
		return history.Approval{SignerKey: u.SignerKey, Signature: u.Signature}
	}
	for name, approvals := range map[string][]history.Approval{
		"one owner":              nil,
		"the same owner twice":   {approve(f.owner)},
		"a stranger's approval":  {approve(stranger)},
		"an approval of another": {{SignerKey: approve(bob).SignerKey, Signature: history.Sign(s.Head, mf(t, "3h", f.owner), bob).Signature}},
	} {
		u := history.Sign(s.Head, next, f.owner)
		u.Approvals = approvals
		if _, err := history.Append(ctx, f.st, f.seed, s, next, u, time.Now()); !errors.Is(err, history.ErrThreshold) {
			t.Fatalf("%s: %v, want ErrThreshold", name, err)
		}
	}
	u := history.Sign(s.Head, next, f.owner)
	u.Approvals = []history.Approval{approve(carol)}
	s2, err := history.Append(ctx, f.st, f.seed, s, next, u, time.Now())
	if err != nil {
		t.Fatalf("two owners: %v", err)
	}
	// Strip the approval from the stored transition: the chain breaks.
	entries := make([]history.Entry, len(s2.Raw))
	for i, raw := range s2.Raw {
		mraw, err := history.ManifestAt(ctx, f.st, s2.Chain[i])
		if err != nil {
			t.Fatal(err)
		}
		entries[i] = history.Entry{Transition: raw, Manifest: mraw}
	}
	if _, err := history.VerifyChain(entries); err != nil {
		t.Fatalf("the chain with approvals: %v", err)
	}
	last := s2.Chain[len(s2.Chain)-1]
	last.Approvals = nil
	entries[len(entries)-1].Transition, _ = json.Marshal(last)
	if _, err := history.VerifyChain(entries); !errors.Is(err, history.ErrTampered) {
		t.Fatalf("the chain with an approval stripped: %v, want ErrTampered", err)
	}
}
