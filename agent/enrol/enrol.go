// Package enrol is the requester's side of enrolment: make a Nebula key pair
// where the workload runs, fetch a nonce, prove what we are, receive a certificate.
// The private key never leaves this process.
package enrol

import (
	"context"
	"crypto/rand"
	"fmt"

	"golang.org/x/crypto/curve25519"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/api"
)

// Enrolment is a certificate with its private key.
type Enrolment struct {
	*api.EnrolResponse
	PrivateKey []byte // X25519; keep in memory only
}

// KeyPair makes a Nebula X25519 key pair.
func KeyPair() (priv, pub []byte, err error) {
	priv = make([]byte, curve25519.ScalarSize)
	if _, err := rand.Read(priv); err != nil {
		return nil, nil, fmt.Errorf("enrol: key: %w", err)
	}
	pub, err = curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return nil, nil, fmt.Errorf("enrol: key: %w", err)
	}
	return priv, pub, nil
}

// Workload enrols with TEE evidence from issuer.
func Workload(ctx context.Context, c *api.Client, issuer attest.Issuer, w api.Workload) (*Enrolment, error) {
	return run(ctx, c, func(req *api.EnrolRequest) error {
		req.Workload = w
		ev, err := issuer.Evidence(attest.ReportData(req.Nonce, req.PublicKey, req.Binding()))
		if err != nil {
			return fmt.Errorf("enrol: %s evidence: %w", issuer.Platform(), err)
		}
		req.Evidence = &api.Evidence{Platform: ev.Platform, Data: ev.Data}
		return nil
	})
}

// Lighthouse enrols with a join token.
func Lighthouse(ctx context.Context, c *api.Client, token string) (*Enrolment, error) {
	return run(ctx, c, func(req *api.EnrolRequest) error {
		req.JoinToken = token
		return nil
	})
}

func run(ctx context.Context, c *api.Client, prove func(*api.EnrolRequest) error) (*Enrolment, error) {
	priv, pub, err := KeyPair()
	if err != nil {
		return nil, err
	}
	n, err := c.Nonce(ctx)
	if err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	req := &api.EnrolRequest{Nonce: n.Nonce, PublicKey: pub}
	if err := prove(req); err != nil {
		return nil, err
	}
	resp, err := c.Enrol(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	return &Enrolment{EnrolResponse: resp, PrivateKey: priv}, nil
}
