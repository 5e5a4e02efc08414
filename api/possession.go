package api

import (
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
)

// A requester proves it holds the private key of the public key it asks a
// certificate for: Nebula keys are X25519, which cannot sign, so the proof
// is an HMAC keyed with the Diffie-Hellman secret of that key and the
// coordinator's possession key (NonceResponse.PossessionKey), over the
// nonce and the public key. Without it, anyone who knew a host's public key
// could have it re-issued, move its lease and take its release token.

// ErrNoPossession means the proof is missing or wrong.
var ErrNoPossession = errors.New("no proof of possession of the private key (enrol again with the key itself)")

// Prove makes the proof for an enrolment with the key pair whose private
// half is priv.
func Prove(priv, possessionKey, nonce, pub []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("proof of possession: %w", err)
	}
	peer, err := ecdh.X25519().NewPublicKey(possessionKey)
	if err != nil {
		return nil, fmt.Errorf("proof of possession: the coordinator's possession key: %w", err)
	}
	shared, err := k.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("proof of possession: %w", err)
	}
	return possessionMAC(shared, nonce, pub), nil
}

// CheckPossession checks proof with the coordinator's private possession key.
func CheckPossession(key *ecdh.PrivateKey, nonce, pub, proof []byte) error {
	peer, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoPossession, err)
	}
	shared, err := key.ECDH(peer)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoPossession, err) // a low-order point
	}
	if !hmac.Equal(proof, possessionMAC(shared, nonce, pub)) {
		return ErrNoPossession
	}
	return nil
}

func possessionMAC(shared, nonce, pub []byte) []byte {
	m := hmac.New(sha256.New, shared)
	m.Write([]byte("sealmesh possession v1\x00"))
	m.Write(nonce)
	m.Write(pub)
	return m.Sum(nil)
}
