package seal

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"fmt"
)

// Seed shares and recovery payloads are HPKE (RFC 9180): DHKEM(X25519,
// HKDF-SHA256), HKDF-SHA256, AES-256-GCM. info binds the ciphertext to its use.

// HPKE info strings: each binds a ciphertext to its one use.
const (
	SeedShareInfo = "sealmesh seed share v1"
	RecoveryInfo  = "sealmesh recovery v1"
	PeerSeedInfo  = "sealmesh peer seed v1"
)

// NewX25519 makes a key pair for receiving shares.
func NewX25519() (*ecdh.PrivateKey, error) { return ecdh.X25519().GenerateKey(rand.Reader) }

// SealTo encrypts pt to the X25519 public key pub.
func SealTo(pub []byte, info string, pt []byte) ([]byte, error) {
	pk, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("seal: X25519 public key: %w", err)
	}
	hpk, err := hpke.NewDHKEMPublicKey(pk)
	if err != nil {
		return nil, err
	}
	return hpke.Seal(hpk, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(info), pt)
}

// OpenWith decrypts what SealTo encrypted to priv's public key.
func OpenWith(priv *ecdh.PrivateKey, info string, ct []byte) ([]byte, error) {
	hk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pt, err := hpke.Open(hk, hpke.HKDFSHA256(), hpke.AES256GCM(), []byte(info), ct)
	if err != nil {
		return nil, fmt.Errorf("seal: cannot open: wrong key, or not made for %q", info)
	}
	return pt, nil
}
