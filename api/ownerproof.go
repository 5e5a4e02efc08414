package api

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
)

// Some reads are for the mesh's owners alone (the encrypted seed shares, the
// full host list). The caller shows it holds an owner key with an OwnerProof:
// an Ed25519 signature over what it asks for and when. The time keeps a
// proof from being useful for long; the call travels over attested TLS, so
// only the coordinator it was sent to ever sees it.

// Purposes an OwnerProof is made for; a proof for one is refused for another.
const (
	PurposeSeedShares = "seed-shares"
	PurposeHosts      = "hosts"
)

// PurposeFresh is the purpose of an owner's statement that head is the
// newest head of the mesh it knows (POST /v1/freshness).
func PurposeFresh(head string) string { return "fresh:" + head }

// ProofWindow is how far an OwnerProof's time may be from the coordinator's
// clock, either way.
const ProofWindow = 5 * time.Minute

// ErrOwnerProof means an OwnerProof does not verify or is too old.
var ErrOwnerProof = errors.New("owner proof")

// OwnerProof is an owner's signature over Purpose and Time.
type OwnerProof struct {
	Purpose   string    `json:"purpose"`
	Time      time.Time `json:"time"`
	SignerKey []byte    `json:"signerKey"`
	Signature []byte    `json:"signature"`
}

func ownerProofDigest(purpose string, t time.Time) []byte {
	sum := sha256.Sum256([]byte("sealmesh owner proof v1\x00" + purpose + "\x00" + t.UTC().Format(time.RFC3339Nano)))
	return sum[:]
}

// ProveOwner signs purpose at now with an owner key.
func ProveOwner(key ed25519.PrivateKey, purpose string, now time.Time) *OwnerProof {
	p, _ := ProveOwnerWith(key, purpose, now) // an in-memory key cannot fail
	return p
}

// ProveOwnerWith is ProveOwner with an owner key held elsewhere (an
// ssh-agent): any Ed25519 crypto.Signer.
func ProveOwnerWith(key crypto.Signer, purpose string, now time.Time) (*OwnerProof, error) {
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("owner proof: an owner key is Ed25519, this one is %T", key.Public())
	}
	now = now.UTC().Round(0)
	sig, err := key.Sign(nil, ownerProofDigest(purpose, now), crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("owner proof: signing: %w", err)
	}
	return &OwnerProof{Purpose: purpose, Time: now, SignerKey: pub, Signature: sig}, nil
}

// Verify checks that p is a proof for purpose, made within ProofWindow of
// now, whose signature verifies under p.SignerKey. Whether that key is an
// owner's is the caller's to check.
func (p *OwnerProof) Verify(purpose string, now time.Time) error {
	switch {
	case p == nil:
		return fmt.Errorf("%w: none given", ErrOwnerProof)
	case p.Purpose != purpose:
		return fmt.Errorf("%w: made for %q, not %q", ErrOwnerProof, p.Purpose, purpose)
	case len(p.SignerKey) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: signerKey is %d bytes, want an Ed25519 key", ErrOwnerProof, len(p.SignerKey))
	case p.Time.Before(now.Add(-ProofWindow)) || p.Time.After(now.Add(ProofWindow)):
		return fmt.Errorf("%w: made at %s, more than %s from the coordinator's clock (%s)", ErrOwnerProof,
			p.Time.UTC().Format(time.RFC3339), ProofWindow, now.UTC().Format(time.RFC3339))
	case !ed25519.Verify(p.SignerKey, ownerProofDigest(purpose, p.Time), p.Signature):
		return fmt.Errorf("%w: the signature does not verify", ErrOwnerProof)
	}
	return nil
}
