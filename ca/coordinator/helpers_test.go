package coordinator_test

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/base64"
	"testing"

	"golang.org/x/crypto/curve25519"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/owner"
)

func curve25519X(priv []byte) ([]byte, error) { return curve25519.X25519(priv, curve25519.Basepoint) }

// The workload owner alice and the seed-share owner bob.
var (
	ownerKey ed25519.PrivateKey
	shareKey *ecdh.PrivateKey
)

func init() {
	var err error
	if ownerKey, _, _, err = owner.NewOwnerKey(); err != nil {
		panic(err)
	}
	if shareKey, _, _, err = owner.NewShareKey(); err != nil {
		panic(err)
	}
}

func ownerPub() string {
	return base64.StdEncoding.EncodeToString(ownerKey.Public().(ed25519.PublicKey))
}

func sharePub() string { return base64.StdEncoding.EncodeToString(shareKey.PublicKey().Bytes()) }

// proven is an enrolment request under nonce n for the key pair of priv,
// with its proof of possession.
func proven(t *testing.T, n *api.NonceResponse, priv []byte) *api.EnrolRequest {
	t.Helper()
	pub, err := curve25519X(priv)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := api.Prove(priv, n.PossessionKey, n.Nonce, pub)
	if err != nil {
		t.Fatal(err)
	}
	return &api.EnrolRequest{Nonce: n.Nonce, PublicKey: pub, Proof: proof}
}

// possessionKey is the coordinator's key for proofs of possession.
func possessionKey(t *testing.T, h *harness) []byte {
	t.Helper()
	n, err := h.c.Nonce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n.PossessionKey
}

func ownerRequest(raw, parent string) (*api.ManifestRequest, error) {
	return owner.Request([]byte(raw), parent, ownerKey)
}
