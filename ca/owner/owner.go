// Package owner is the workload owner's side of manifest changes: owner keys and
// the signed request that moves the manifest from one transition to the next.
package owner

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/manifest"
)

// Request signs raw (JSON or YAML) as the successor of parent ("" for the first
// manifest). The signature covers the manifest's canonical hash, so formatting
// does not matter.
func Request(raw []byte, parent string, key crypto.Signer) (*api.ManifestRequest, error) {
	m, err := manifest.Parse(raw)
	if err != nil {
		return nil, err
	}
	u, err := history.SignWith(parent, m, key)
	if err != nil {
		return nil, err
	}
	return &api.ManifestRequest{Manifest: raw, Parent: parent, SignerKey: u.SignerKey, Signature: u.Signature}, nil
}

// NewOwnerKey makes an Ed25519 owner key; it returns the PEM to keep and the
// base64 public key for the manifest's owners list.
func NewOwnerKey() (ed25519.PrivateKey, []byte, string, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	p, err := marshal(key)
	return key, p, base64.StdEncoding.EncodeToString(pub), err
}

// NewShareKey makes an X25519 seed-share key; it returns the PEM to keep and the
// base64 public key for the manifest's seedShareOwners list.
func NewShareKey() (*ecdh.PrivateKey, []byte, string, error) {
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, "", err
	}
	p, err := marshal(key)
	return key, p, base64.StdEncoding.EncodeToString(key.PublicKey().Bytes()), err
}

func marshal(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func load(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM private key (meshctl keygen makes one)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadOwnerKey reads an owner key written by NewOwnerKey.
func LoadOwnerKey(path string) (ed25519.PrivateKey, error) {
	k, err := load(path)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an owner (Ed25519) key", path)
	}
	return ek, nil
}

// LoadShareKey reads a seed-share key written by NewShareKey.
func LoadShareKey(path string) (*ecdh.PrivateKey, error) {
	k, err := load(path)
	if err != nil {
		return nil, err
	}
	xk, ok := k.(*ecdh.PrivateKey)
	if !ok || xk.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("%s: not a seed-share (X25519) key", path)
	}
	return xk, nil
}
