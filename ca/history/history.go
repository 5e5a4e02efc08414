// Package history is the coordinator's signed state (invariants D and F): a hash
// chain of transitions, each naming the previous transition, the manifest and the
// CA certificate by hash, with a generation number, and each signed by an owner of
// the manifest it replaces (the first by an owner of its own manifest). The latest
// pointer is signed with a key derived from the seed. Everything lives in an
// untrusted store and is verified on every load; a store rolled back below the
// floor the caller has seen is refused.
package history

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

// Errors, distinguishable with errors.Is.
var (
	// ErrTampered: the store's content does not verify.
	ErrTampered = errors.New("history: store does not verify")
	// ErrRollback: the store's latest is older than a generation already seen,
	// or on another branch than it.
	ErrRollback = errors.New("history: store rolled back")
	// ErrStale: the update names a parent that is no longer the latest.
	ErrStale = errors.New("history: update is based on a transition that is no longer the latest")
	// ErrUnauthorized: the update is not signed by an owner of the current manifest.
	ErrUnauthorized = errors.New("history: update not signed by an owner")
	// ErrThreshold: fewer distinct owners signed than the current
	// manifest's updateThreshold. errors.Is(ErrThreshold, ErrUnauthorized).
	ErrThreshold = fmt.Errorf("%w: too few owner signatures", ErrUnauthorized)
	// ErrFinal: the current manifest has no owners, so nothing may follow
	// it (an immutable mesh). errors.Is(ErrFinal, ErrUnauthorized) holds.
	ErrFinal = fmt.Errorf("%w: the mesh is immutable", ErrUnauthorized)
	// ErrInvalid: the update breaks a rule of the history.
	ErrInvalid = errors.New("history: invalid update")
	// ErrEmpty: the store holds no history.
	ErrEmpty = errors.New("history: store is empty")
)

// Transition is one step of the history.
type Transition struct {
	Generation uint64    `json:"generation"`
	Prev       string    `json:"prev,omitempty"`
	Manifest   string    `json:"manifest"`
	CA         string    `json:"ca"`
	Time       time.Time `json:"time"`
	Signer     string    `json:"signer"`
	SignerKey  []byte    `json:"signerKey"`
	Signature  []byte    `json:"signature"`
	// Shares is the hash of the seed shares made with the mesh (generation
	// 1 only; none when the manifest names no seed-share owners).
	Shares string `json:"shares,omitempty"`
	// Approvals are the other owners' signatures of the same update, where
	// the manifest replaced sets an updateThreshold above one.
	Approvals []Approval `json:"approvals,omitempty"`
}

// Approval is one more owner's signature of an update (UpdateDigest).
type Approval struct {
	SignerKey []byte `json:"signerKey"`
	Signature []byte `json:"signature"`
}

// latest is the signed pointer to the newest transition.
type latest struct {
	Generation uint64 `json:"generation"`
	Transition string `json:"transition"`
	Signature  []byte `json:"signature"`
}

func (l *latest) signed() []byte {
	var b bytes.Buffer
	b.WriteString("sealmesh latest v1\x00")
	binary.Write(&b, binary.BigEndian, l.Generation)
	b.WriteString(l.Transition)
	return b.Bytes()
}

// UpdateDigest is what an owner signs to move the manifest from the transition
// parent ("" for the first) to the manifest with hash manifestHash.
func UpdateDigest(parent, manifestHash string) []byte {
	sum := sha256.Sum256([]byte("sealmesh manifest update v1\x00" + parent + "\x00" + manifestHash))
	return sum[:]
}

// UpdateDigestHex is UpdateDigest in hex: a proposal's ID.
func UpdateDigestHex(parent, manifestHash string) string {
	return hex.EncodeToString(UpdateDigest(parent, manifestHash))
}

// Update is an owner's signed request to change the manifest, with the
// approvals of other owners where the current manifest needs several.
type Update struct {
	Parent    string
	SignerKey ed25519.PublicKey
	Signature []byte
	Approvals []Approval
}

// Sign makes an Update moving parent to m with the owner's key.
func Sign(parent string, m *manifest.Manifest, key ed25519.PrivateKey) Update {
	return Update{Parent: parent, SignerKey: key.Public().(ed25519.PublicKey), Signature: ed25519.Sign(key, UpdateDigest(parent, m.Hash()))}
}

// SignWith is Sign with an owner key held elsewhere (an ssh-agent): any
// Ed25519 crypto.Signer.
func SignWith(parent string, m *manifest.Manifest, key crypto.Signer) (Update, error) {
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok {
		return Update{}, fmt.Errorf("history: an owner key is Ed25519, this one is %T", key.Public())
	}
	digest := UpdateDigest(parent, m.Hash())
	sig, err := key.Sign(nil, digest, crypto.Hash(0))
	if err != nil {
		return Update{}, fmt.Errorf("history: signing: %w", err)
	}
	if !ed25519.Verify(pub, digest, sig) {
		return Update{}, errors.New("history: the owner key made a signature that does not verify")
	}
	return Update{Parent: parent, SignerKey: pub, Signature: sig}, nil
}

// Floor is the newest point of the history a coordinator has seen; Load refuses
// anything older. The zero Floor accepts any history.
type Floor struct {
	Generation uint64 `json:"generation"`
	Head       string `json:"head"`
}

// State is a verified history.
type State struct {
	Head  string
	Chain []Transition // oldest first; Chain[len-1] is the head
	// Raw holds each transition as stored (its hash is the head it makes),
	// for clients to re-check (VerifyChain).
	Raw      [][]byte
	Manifest *manifest.Manifest
	CAPEM    []byte
	// PrevCAPEM is the previous CA generation's certificate while the
	// manifest still trusts it (ca.trustPrevious: a rotation's first step).
	PrevCAPEM []byte
	Version   store.Version
}

// TrustPEM is every CA certificate hosts trust now: the current one, and
// the previous generation's during a rotation.
func (s *State) TrustPEM() []byte {
	return append(bytes.Clone(s.CAPEM), s.PrevCAPEM...)
}

// Generation is the head's generation.
func (s *State) Generation() uint64 { return s.Chain[len(s.Chain)-1].Generation }

// MeshID names the mesh: the hash of its first transition, which commits to
// the first manifest (its owners), the CA certificate and the owner's
// signature. Every later state of the mesh descends from it; a history of
// another mesh, however valid in itself, has another ID.
func (s *State) MeshID() string {
	if len(s.Chain) > 1 {
		return s.Chain[1].Prev
	}
	return s.Head
}

// Floor is the state as an anti-rollback floor.
func (s *State) Floor() Floor { return Floor{Generation: s.Generation(), Head: s.Head} }

// Store keys.
func manifestKey(h string) string   { return "manifest-" + h }
func transitionKey(h string) string { return "transition-" + h }
func caKey(h string) string         { return "ca-" + h }
func sharesKey(h string) string     { return "shares-" + h }

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Create writes the first transition, with the seed shares (opaque; nil for
// none) as an object it names. It fails with store.ErrConflict if the store
// already holds a history.
func Create(ctx context.Context, st store.Store, seed keys.Seed, m *manifest.Manifest, u Update, caPEM, shares []byte, now time.Time) (*State, error) {
	if u.Parent != "" {
		return nil, fmt.Errorf("%w: the first manifest has no parent, got %q", ErrInvalid, u.Parent)
	}
	owner, err := authorise(m, m, u)
	if err != nil {
		return nil, err
	}
	return write(ctx, st, seed, nil, m, owner, u, caPEM, shares, now)
}

// Append moves cur to manifest m, if u is signed by an owner of cur's manifest and
// names cur's head as parent.
func Append(ctx context.Context, st store.Store, seed keys.Seed, cur *State, m *manifest.Manifest, u Update, now time.Time) (*State, error) {
	if m.CAGen() != cur.Manifest.CAGen() {
		return nil, fmt.Errorf("%w: CA generation %d → %d needs the new CA's certificate (AppendWithCA)", ErrInvalid, cur.Manifest.CAGen(), m.CAGen())
	}
	return appendWith(ctx, st, seed, cur, m, u, cur.CAPEM, now)
}

// AppendWithCA is Append for a transition that moves to CA generation
// m.CAGen() (meshctl rotate ca), whose certificate caPEM the caller made
// with the seed's key for that generation.
func AppendWithCA(ctx context.Context, st store.Store, seed keys.Seed, cur *State, m *manifest.Manifest, u Update, caPEM []byte, now time.Time) (*State, error) {
	if m.CAGen() == cur.Manifest.CAGen() {
		caPEM = cur.CAPEM
	}
	return appendWith(ctx, st, seed, cur, m, u, caPEM, now)
}

// appendWith checks u against cur and writes m under the CA caPEM.
func appendWith(ctx context.Context, st store.Store, seed keys.Seed, cur *State, m *manifest.Manifest, u Update, caPEM []byte, now time.Time) (*State, error) {
	if u.Parent != cur.Head {
		return nil, fmt.Errorf("%w: it names %s, the latest is %s (generation %d); fetch the manifest and sign again", ErrStale, short(u.Parent), short(cur.Head), cur.Generation())
	}
	owner, err := authorise(cur.Manifest, m, u)
	if err != nil {
		return nil, err
	}
	if err := checkStep(cur.Manifest, m); err != nil {
		return nil, err
	}
	return write(ctx, st, seed, cur, m, owner, u, caPEM, nil, now)
}

// checkStep holds the rules between consecutive manifests that do not
// depend on who signed.
func checkStep(cur, m *manifest.Manifest) error {
	if !slices.Equal(cur.SeedShareOwners, m.SeedShareOwners) || cur.SeedShareThreshold != m.SeedShareThreshold {
		return fmt.Errorf("%w: seedShareOwners and seedShareThreshold are fixed by the first manifest and cannot change", ErrInvalid)
	}
	if err := manifest.CAStep(cur, m); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// authorise checks that u is signed by an owner of by over m. A manifest
// without owners authorises nothing: it is final.
func authorise(by, m *manifest.Manifest, u Update) (manifest.PublicKey, error) {
	if by.Immutable() {
		if by == m {
			return manifest.PublicKey{}, fmt.Errorf("%w: a first manifest without owners has nobody to sign it; create the mesh with owners, then set a manifest without them", ErrUnauthorized)
		}
		return manifest.PublicKey{}, fmt.Errorf("%w: manifest %s has no owners, so no transition may follow it (not even from its former owners)", ErrFinal, by.Hash()[:12])
	}
	owner, ok := by.Owner(u.SignerKey)
	if !ok {
		return owner, fmt.Errorf("%w: the signing key is not an owner of the current manifest", ErrUnauthorized)
	}
	digest := UpdateDigest(u.Parent, m.Hash())
	if len(u.SignerKey) != ed25519.PublicKeySize || !ed25519.Verify(u.SignerKey, digest, u.Signature) {
		return owner, fmt.Errorf("%w: the signature of owner %s does not verify for this manifest and parent", ErrUnauthorized, owner.Name)
	}
	// The first manifest is its creator's (who may be pinned with
	// --owner-key); every later one needs the threshold of the one it
	// replaces, so lowering the threshold or changing owners needs the old.
	need := by.UpdateThresholdOrOne()
	if by == m {
		need = 1
	}
	signed := []string{owner.Name}
	for _, a := range u.Approvals {
		o, ok := by.Owner(a.SignerKey)
		if !ok || slices.Contains(signed, o.Name) {
			continue // not an owner, or one already counted
		}
		if len(a.SignerKey) == ed25519.PublicKeySize && ed25519.Verify(a.SignerKey, digest, a.Signature) {
			signed = append(signed, o.Name)
		}
	}
	if len(signed) < need {
		return owner, fmt.Errorf("%w: %d of the %d owner signatures manifest %s needs (signed: %s); collect them with meshctl manifest propose and approve",
			ErrThreshold, len(signed), need, by.Hash()[:12], strings.Join(signed, ", "))
	}
	return owner, nil
}

func write(ctx context.Context, st store.Store, seed keys.Seed, cur *State, m *manifest.Manifest, owner manifest.PublicKey, u Update, caPEM, shares []byte, now time.Time) (*State, error) {
	mraw := m.Canonical()
	t := Transition{
		Generation: 1, Manifest: hashOf(mraw), CA: hashOf(caPEM), Time: now.UTC(),
		Signer: owner.Name, SignerKey: u.SignerKey, Signature: u.Signature, Approvals: u.Approvals,
	}
	var old store.Version
	var chain []Transition
	if cur != nil {
		t.Generation, t.Prev, old, chain = cur.Generation()+1, cur.Head, cur.Version, slices.Clone(cur.Chain)
	}
	objects := map[string][]byte{manifestKey(t.Manifest): mraw, caKey(t.CA): caPEM}
	if cur == nil && len(shares) > 0 {
		t.Shares = hashOf(shares)
		objects[sharesKey(t.Shares)] = shares
	}
	traw, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	var raws [][]byte
	if cur != nil {
		raws = slices.Clone(cur.Raw)
	}
	head := hashOf(traw)
	objects[transitionKey(head)] = traw
	// Objects first, pointer last: a crash in between leaves unreferenced
	// objects and the old, still valid, latest.
	for k, v := range objects {
		if err := st.Put(ctx, k, v); err != nil {
			return nil, fmt.Errorf("history: write %s: %w", k, err)
		}
	}
	l := latest{Generation: t.Generation, Transition: head}
	l.Signature = ed25519.Sign(seed.HistoryKey(), l.signed())
	lraw, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	v, err := st.SwapLatest(ctx, old, lraw)
	if errors.Is(err, store.ErrConflict) {
		return nil, fmt.Errorf("%w: the store's latest moved while writing; fetch and sign again", ErrStale)
	}
	if err != nil {
		return nil, fmt.Errorf("history: swap latest: %w", err)
	}
	next := &State{Head: head, Chain: append(chain, t), Raw: append(raws, traw), Manifest: m, CAPEM: caPEM, Version: v}
	switch {
	case cur == nil || !m.TrustsPreviousCA():
	case m.CAGen() != cur.Manifest.CAGen():
		next.PrevCAPEM = cur.CAPEM
	default:
		next.PrevCAPEM = cur.PrevCAPEM
	}
	return next, nil
}

// Load reads and verifies the whole history: the latest pointer's signature with
// the seed, every hash link, every owner signature, and the floor.
func Load(ctx context.Context, st store.Store, seed keys.Seed, floor Floor) (*State, error) {
	lraw, v, err := st.Latest(ctx)
	if errors.Is(err, store.ErrNotFound) {
		if floor.Generation > 0 {
			return nil, fmt.Errorf("%w: the store is empty, but generation %d was seen", ErrRollback, floor.Generation)
		}
		return nil, ErrEmpty
	}
	if err != nil {
		return nil, err
	}
	var l latest
	if err := json.Unmarshal(lraw, &l); err != nil {
		return nil, fmt.Errorf("%w: latest pointer is not valid JSON", ErrTampered)
	}
	if !ed25519.Verify(seed.HistoryKey().Public().(ed25519.PublicKey), l.signed(), l.Signature) {
		return nil, fmt.Errorf("%w: the latest pointer's signature does not verify with this mesh's seed", ErrTampered)
	}
	if l.Generation < floor.Generation {
		return nil, fmt.Errorf("%w: the store's latest is generation %d, generation %d was already seen", ErrRollback, l.Generation, floor.Generation)
	}
	if l.Generation == 0 {
		return nil, fmt.Errorf("%w: latest has generation 0", ErrTampered)
	}

	raws := make([][]byte, l.Generation)
	h := l.Transition
	for g := l.Generation; g >= 1; g-- {
		raw, err := st.Get(ctx, transitionKey(h))
		if err != nil {
			return nil, missing(err, fmt.Sprintf("transition %s (generation %d)", short(h), g))
		}
		if hashOf(raw) != h {
			return nil, fmt.Errorf("%w: transition %s (generation %d) does not match its hash", ErrTampered, short(h), g)
		}
		var t Transition
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, fmt.Errorf("%w: transition %s is not valid JSON", ErrTampered, short(h))
		}
		if t.Generation != g || (g == 1) != (t.Prev == "") {
			return nil, fmt.Errorf("%w: transition %s claims generation %d at position %d", ErrTampered, short(h), t.Generation, g)
		}
		raws[g-1] = raw
		if g == floor.Generation && h != floor.Head {
			return nil, fmt.Errorf("%w: generation %d is %s in the store, %s was seen: the store is on another branch", ErrRollback, g, short(h), short(floor.Head))
		}
		h = t.Prev
	}
	entries := make([]Entry, len(raws))
	for i, raw := range raws {
		var t Transition
		json.Unmarshal(raw, &t) // parsed in the walk above
		mraw, err := getVerified(ctx, st, manifestKey(t.Manifest), t.Manifest)
		if err != nil {
			return nil, err
		}
		entries[i] = Entry{Transition: raw, Manifest: mraw}
	}
	vh, err := VerifyChain(entries)
	if err != nil {
		return nil, err
	}
	head := vh.Chain[len(vh.Chain)-1]
	caPEM, err := getVerified(ctx, st, caKey(head.CA), head.CA)
	if err != nil {
		return nil, err
	}
	out := &State{Head: l.Transition, Chain: vh.Chain, Raw: raws, Manifest: vh.Manifests[len(vh.Manifests)-1], CAPEM: caPEM, Version: v}
	if out.Manifest.TrustsPreviousCA() {
		// The previous generation's certificate: the newest transition
		// under another CA.
		for i := len(vh.Chain) - 2; i >= 0; i-- {
			if c := vh.Chain[i].CA; c != head.CA {
				if out.PrevCAPEM, err = getVerified(ctx, st, caKey(c), c); err != nil {
					return nil, err
				}
				break
			}
		}
	}
	return out, nil
}

// Entry is one transition as stored, with its manifest as stored: what a
// client needs to re-check a history without the seed.
type Entry struct {
	Transition []byte
	Manifest   []byte
}

// Verified is a history checked from its first transition (VerifyChain).
type Verified struct {
	Chain     []Transition
	Manifests []*manifest.Manifest
	// Heads are the heads the transitions make (their hashes).
	Heads []string
}

// Head is the newest transition's hash.
func (v *Verified) Head() string { return v.Heads[len(v.Heads)-1] }

// MeshID is the mesh's ID (State.MeshID): the first transition's hash.
func (v *Verified) MeshID() string { return v.Heads[0] }

// VerifyChain checks a whole history from its first transition: each
// transition's hash links to its parent, generations run 1, 2, 3 without a
// gap, each manifest matches the hash its transition names, each transition
// is signed by an owner of the manifest it replaces (the first by an owner
// of its own), and the seed-share owners never change. It needs no seed:
// Load runs it on the store's history, and a data owner's client (meshctl
// verify) on what a coordinator sends.
func VerifyChain(entries []Entry) (*Verified, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: no transitions", ErrTampered)
	}
	v := &Verified{}
	var prev *manifest.Manifest
	for i, e := range entries {
		g := uint64(i + 1)
		h := hashOf(e.Transition)
		var t Transition
		if err := json.Unmarshal(e.Transition, &t); err != nil {
			return nil, fmt.Errorf("%w: transition %s is not valid JSON", ErrTampered, short(h))
		}
		switch {
		case t.Generation != g:
			return nil, fmt.Errorf("%w: transition %s claims generation %d at position %d", ErrTampered, short(h), t.Generation, g)
		case i == 0 && t.Prev != "":
			return nil, fmt.Errorf("%w: the first transition %s names a parent", ErrTampered, short(h))
		case i > 0 && t.Prev != v.Heads[i-1]:
			return nil, fmt.Errorf("%w: generation %d names parent %s, generation %d is %s", ErrTampered, g, short(t.Prev), g-1, short(v.Heads[i-1]))
		case hashOf(e.Manifest) != t.Manifest:
			return nil, fmt.Errorf("%w: the manifest of generation %d does not match its hash", ErrTampered, g)
		}
		m, err := manifest.ParseJSON(e.Manifest)
		if err != nil {
			return nil, fmt.Errorf("%w: manifest of generation %d: %v", ErrTampered, g, err)
		}
		by := prev
		if by == nil {
			by = m
		}
		if _, err := authorise(by, m, Update{Parent: t.Prev, SignerKey: t.SignerKey, Signature: t.Signature, Approvals: t.Approvals}); err != nil {
			return nil, fmt.Errorf("%w: generation %d: %v", ErrTampered, g, err)
		}
		if prev != nil {
			if err := checkStep(prev, m); err != nil {
				return nil, fmt.Errorf("%w: generation %d: %v", ErrTampered, g, err)
			}
			// A CA moves only with its generation.
			if (m.CAGen() == prev.CAGen()) != (t.CA == v.Chain[i-1].CA) {
				return nil, fmt.Errorf("%w: generation %d changes the CA certificate without changing its generation, or the other way round", ErrTampered, g)
			}
		}
		v.Chain, v.Manifests, v.Heads = append(v.Chain, t), append(v.Manifests, m), append(v.Heads, h)
		prev = m
	}
	return v, nil
}

func getVerified(ctx context.Context, st store.Store, key, want string) ([]byte, error) {
	b, err := st.Get(ctx, key)
	if err != nil {
		return nil, missing(err, key)
	}
	if hashOf(b) != want {
		return nil, fmt.Errorf("%w: %s does not match its hash", ErrTampered, key)
	}
	return b, nil
}

// missing is the error for an object of the chain the store did not return:
// tampering if the store says it is not there, else the store's own error
// (I/O, which a retry may cure; see Verdict).
func missing(err error, what string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s: %v", ErrTampered, what, err)
	}
	return fmt.Errorf("history: reading %s from the store: %w", what, err)
}

// Verdict reports whether err says the store's contents do not verify
// (tampered, rolled back, unsigned, invalid), as opposed to the store not
// answering: the first stops a coordinator, the second only degrades it.
func Verdict(err error) bool {
	for _, e := range []error{ErrTampered, ErrRollback, ErrUnauthorized, ErrInvalid, ErrStale} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ManifestAt returns the manifest of one transition, verified against its hash.
func ManifestAt(ctx context.Context, st store.Store, t Transition) ([]byte, error) {
	return getVerified(ctx, st, manifestKey(t.Manifest), t.Manifest)
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	if h == "" {
		return "(none)"
	}
	return h
}

// Shares returns the seed shares the first transition names (nil if none).
// Like Peek it needs no seed and verifies only the hash links from the latest
// pointer back to the first transition: the shares are encrypted to their
// owners, and a seed that does not verify the history is refused at
// recovery, so a store that swaps them gains nothing.
func Shares(ctx context.Context, st store.Store) ([]byte, error) {
	t, _, err := genesis(ctx, st)
	if err != nil {
		return nil, err
	}
	return GenesisShares(ctx, st, t)
}

// genesis walks the hash links from the latest pointer to the first
// transition and returns it with its hash.
func genesis(ctx context.Context, st store.Store) (Transition, string, error) {
	lraw, _, err := st.Latest(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return Transition{}, "", ErrEmpty
	}
	if err != nil {
		return Transition{}, "", err
	}
	var l latest
	if err := json.Unmarshal(lraw, &l); err != nil {
		return Transition{}, "", fmt.Errorf("%w: latest pointer is not valid JSON", ErrTampered)
	}
	return genesisFrom(ctx, st, l)
}

// genesisFrom walks from l to the first transition.
func genesisFrom(ctx context.Context, st store.Store, l latest) (Transition, string, error) {
	var t Transition
	h := l.Transition
	for g := l.Generation; g >= 1; g-- {
		raw, err := getVerified(ctx, st, transitionKey(h), h)
		if err != nil {
			return t, "", err
		}
		t = Transition{}
		if err := json.Unmarshal(raw, &t); err != nil {
			return t, "", fmt.Errorf("%w: transition %s is not valid JSON", ErrTampered, short(h))
		}
		if t.Generation != g {
			return t, "", fmt.Errorf("%w: transition %s claims generation %d at position %d", ErrTampered, short(h), t.Generation, g)
		}
		if g == 1 {
			return t, h, nil
		}
		h = t.Prev
	}
	return t, "", fmt.Errorf("%w: latest has generation 0", ErrTampered)
}

// GenesisShares returns the seed shares the first transition t names (nil if
// none), checked against their hash.
func GenesisShares(ctx context.Context, st store.Store, t Transition) ([]byte, error) {
	if t.Shares == "" {
		return nil, nil
	}
	return getVerified(ctx, st, sharesKey(t.Shares), t.Shares)
}

// Peek reads the store's latest manifest without the seed: nothing is verified
// but the hash links from the latest pointer to the manifest. A recovering
// coordinator uses it only to learn which peers may serve it keys (their
// coordinator roles), and must later require the verified history to match what
// it peeked (invariant B).
func Peek(ctx context.Context, st store.Store) (*manifest.Manifest, string, uint64, error) {
	p, err := PeekAll(ctx, st)
	if err != nil {
		return nil, "", 0, err
	}
	return p.Manifest, p.Head, p.Generation, nil
}

// Peeked is the store's latest state as Peek reads it, with its mesh's ID
// (State.MeshID) from the hash links back to the first transition.
type Peeked struct {
	Manifest   *manifest.Manifest
	Head       string
	Generation uint64
	MeshID     string
}

// PeekAll is Peek with the mesh ID, from one read of the latest pointer: a
// coordinator checks the mesh and chooses its peers from the same state.
func PeekAll(ctx context.Context, st store.Store) (*Peeked, error) {
	lraw, _, err := st.Latest(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrEmpty
	}
	if err != nil {
		return nil, err
	}
	var l latest
	if err := json.Unmarshal(lraw, &l); err != nil {
		return nil, fmt.Errorf("%w: latest pointer is not valid JSON", ErrTampered)
	}
	_, mesh, err := genesisFrom(ctx, st, l)
	if err != nil {
		return nil, err
	}
	traw, err := getVerified(ctx, st, transitionKey(l.Transition), l.Transition)
	if err != nil {
		return nil, err
	}
	var t Transition
	if err := json.Unmarshal(traw, &t); err != nil {
		return nil, fmt.Errorf("%w: transition is not valid JSON", ErrTampered)
	}
	mraw, err := getVerified(ctx, st, manifestKey(t.Manifest), t.Manifest)
	if err != nil {
		return nil, err
	}
	m, err := manifest.ParseJSON(mraw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTampered, err)
	}
	return &Peeked{Manifest: m, Head: l.Transition, Generation: l.Generation, MeshID: mesh}, nil
}
