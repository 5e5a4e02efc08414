// Package keys holds the mesh's one root secret, the seed, and derives every other
// key from it with HKDF, so that sealing, recovering or sharing the seed covers them
// all. Derived keys are never stored.
package keys

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// SeedSize is the seed's length in bytes.
const SeedSize = 32

// Seed is the mesh's root secret.
type Seed [SeedSize]byte

// NewSeed makes a fresh seed.
func NewSeed() (Seed, error) {
	var s Seed
	if _, err := rand.Read(s[:]); err != nil {
		return s, fmt.Errorf("keys: seed: %w", err)
	}
	return s, nil
}

// SeedFrom checks and copies b.
func SeedFrom(b []byte) (Seed, error) {
	var s Seed
	if len(b) != SeedSize {
		return s, fmt.Errorf("keys: seed is %d bytes, want %d", len(b), SeedSize)
	}
	copy(s[:], b)
	return s, nil
}

func (s Seed) derive(info string) []byte {
	k, err := hkdf.Key(sha256.New, s[:], nil, info, ed25519.SeedSize)
	if err != nil {
		panic(fmt.Sprintf("keys: hkdf: %v", err)) // only for lengths HKDF cannot give
	}
	return k
}

// HistoryKey signs the latest pointer of the state history.
func (s Seed) HistoryKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(s.derive("sealmesh history signing v1"))
}

// GossipKey authenticates what a coordinator holding the seed announces in
// gossip: only coordinators that attested (or the owner who made the mesh)
// have it, so an announcement it authenticates comes from one of them.
func (s Seed) GossipKey() []byte {
	return s.derive("sealmesh gossip vouch v1")
}

// LeaseKey authenticates lease records in the store: a record the store
// made up or changed (to hand a live address to a second key, or to steer a
// renewing host to an address of the writer's choosing) does not verify.
func (s Seed) LeaseKey() []byte {
	return s.derive("sealmesh lease records v1")
}

// CAKey is the Nebula CA key of a CA generation; rotating the CA moves to the next
// generation.
func (s Seed) CAKey(generation uint64) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(s.derive(fmt.Sprintf("sealmesh nebula ca v1 generation %d", generation)))
}
