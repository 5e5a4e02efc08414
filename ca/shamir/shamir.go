// Package shamir splits the mesh's seed into k-of-n shares for its
// seed-share owners, and joins k of them again. The sharing itself is
// circl's (Cloudflare's secretsharing: Shamir over Ristretto255's scalar
// field, with Feldman commitments), a well-kept implementation rather than
// one written here: the seed is encrypted (AES-256-GCM) under a key derived
// from a random scalar, and the scalar is what is shared. The commitments
// let each share be checked on its own, so a corrupted share is named
// rather than silently yielding a wrong seed.
package shamir

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
)

var g = group.Ristretto255

// magic starts an encoded share, so that a share is never taken for a
// whole seed (32 bytes) or the other way round.
const magic = "SMSHARE1"

// ErrCorrupt: a share does not belong to the sharing its commitment names.
var ErrCorrupt = errors.New("shamir: the share is not one of this sharing's (corrupted, or of another mesh)")

// Public is what every holder may see and the store keeps: the threshold,
// the Feldman commitment and the wrapped seed.
type Public struct {
	Threshold  int    `json:"threshold"`
	Commitment []byte `json:"commitment"`
	Wrapped    []byte `json:"wrapped"`
}

// Split shares seed k-of-n (2 <= k <= n): n encoded shares, and the public
// part they are checked and joined with.
func Split(seed []byte, k, n int) ([][]byte, Public, error) {
	if k < 2 || k > n {
		return nil, Public{}, fmt.Errorf("shamir: threshold %d of %d: want 2 <= threshold <= owners", k, n)
	}
	s := g.RandomScalar(rand.Reader)
	wrapped, err := seal(s, seed)
	if err != nil {
		return nil, Public{}, err
	}
	ss := secretsharing.New(rand.Reader, uint(k-1), s)
	var commit []byte
	for _, e := range ss.CommitSecret() {
		b, err := e.MarshalBinaryCompress()
		if err != nil {
			return nil, Public{}, err
		}
		commit = append(commit, b...)
	}
	var out [][]byte
	for _, sh := range ss.Share(uint(n)) {
		id, _ := sh.ID.MarshalBinary()
		v, _ := sh.Value.MarshalBinary()
		out = append(out, append(append([]byte(magic), id...), v...))
	}
	return out, Public{Threshold: k, Commitment: commit, Wrapped: wrapped}, nil
}

// IsShare reports whether b is an encoded share (not a whole seed).
func IsShare(b []byte) bool { return len(b) > len(magic) && string(b[:len(magic)]) == magic }

// Check decodes a share and checks it against p's commitment; it returns
// the share's ID (1 to n).
func Check(b []byte, p Public) (uint64, error) {
	sh, err := decode(b)
	if err != nil {
		return 0, err
	}
	c, err := commitment(p)
	if err != nil {
		return 0, err
	}
	if !secretsharing.Verify(uint(p.Threshold-1), sh, c) {
		return 0, ErrCorrupt
	}
	return id(sh), nil
}

// Join checks each share and, with at least p.Threshold distinct ones,
// returns the seed.
func Join(shares [][]byte, p Public) ([]byte, error) {
	c, err := commitment(p)
	if err != nil {
		return nil, err
	}
	seen := map[uint64]bool{}
	var good []secretsharing.Share
	for i, b := range shares {
		sh, err := decode(b)
		if err != nil {
			return nil, fmt.Errorf("share %d: %w", i+1, err)
		}
		if !secretsharing.Verify(uint(p.Threshold-1), sh, c) {
			return nil, fmt.Errorf("share %d (ID %d): %w", i+1, id(sh), ErrCorrupt)
		}
		if !seen[id(sh)] {
			seen[id(sh)] = true
			good = append(good, sh)
		}
	}
	if len(good) < p.Threshold {
		return nil, fmt.Errorf("shamir: %d distinct shares, %d needed", len(good), p.Threshold)
	}
	s, err := secretsharing.Recover(uint(p.Threshold-1), good)
	if err != nil {
		return nil, err
	}
	return open(s, p.Wrapped)
}

func decode(b []byte) (secretsharing.Share, error) {
	n := int(g.Params().ScalarLength)
	if !IsShare(b) || len(b) != len(magic)+2*n {
		return secretsharing.Share{}, errors.New("shamir: not an encoded share")
	}
	idS, val := g.NewScalar(), g.NewScalar()
	if idS.UnmarshalBinary(b[len(magic):len(magic)+n]) != nil || val.UnmarshalBinary(b[len(magic)+n:]) != nil || idS.IsZero() {
		return secretsharing.Share{}, errors.New("shamir: not an encoded share")
	}
	return secretsharing.Share{ID: idS, Value: val}, nil
}

// id is a share's ID as a number (IDs are 1..n, little-endian scalars).
func id(sh secretsharing.Share) uint64 {
	b, _ := sh.ID.MarshalBinary()
	return binary.LittleEndian.Uint64(b[:8])
}

func commitment(p Public) (secretsharing.SecretCommitment, error) {
	n := int(g.Params().CompressedElementLength)
	if p.Threshold < 2 || len(p.Commitment) != p.Threshold*n {
		return nil, fmt.Errorf("shamir: a commitment of %d bytes for threshold %d", len(p.Commitment), p.Threshold)
	}
	var c secretsharing.SecretCommitment
	for i := 0; i < p.Threshold; i++ {
		e := g.NewElement()
		if err := e.UnmarshalBinary(p.Commitment[i*n : (i+1)*n]); err != nil {
			return nil, fmt.Errorf("shamir: commitment: %w", err)
		}
		c = append(c, e)
	}
	return c, nil
}

func aead(s group.Scalar) (cipher.AEAD, error) {
	sb, err := s.MarshalBinary()
	if err != nil {
		return nil, err
	}
	key, err := hkdf.Key(sha256.New, sb, nil, "sealmesh seed share wrap v1", 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func seal(s group.Scalar, seed []byte) ([]byte, error) {
	a, err := aead(s)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize())
	rand.Read(nonce) // never fails (crypto/rand)
	return a.Seal(nonce, nonce, seed, []byte(magic)), nil
}

func open(s group.Scalar, wrapped []byte) ([]byte, error) {
	a, err := aead(s)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < a.NonceSize() {
		return nil, errors.New("shamir: wrapped seed too short")
	}
	seed, err := a.Open(nil, wrapped[:a.NonceSize()], wrapped[a.NonceSize():], []byte(magic))
	if err != nil {
		return nil, errors.New("shamir: the joined shares do not open the wrapped seed")
	}
	return seed, nil
}
