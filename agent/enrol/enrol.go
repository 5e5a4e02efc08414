// Package enrol is the requester's side of enrolment: make a Nebula key pair
// where the workload runs, fetch a nonce, prove what we are, receive a certificate.
// The private key never leaves this process.
package enrol

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/jointoken"
)

// Enrolment is a certificate with its private key.
type Enrolment struct {
	*api.EnrolResponse
	PrivateKey []byte // X25519; keep in memory only
}

// KeyPair makes a Nebula X25519 key pair. (crypto/ecdh derives the public
// key once; x/crypto's X25519 with the base point derives it twice, which
// showed in the enrolment benchmark's profile.)
func KeyPair() (priv, pub []byte, err error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("enrol: key: %w", err)
	}
	return k.Bytes(), k.PublicKey().Bytes(), nil
}

// Key is a requester's key pair as enrolment needs it: the public half, and
// a proof of possession of the private half (api.Prove), made wherever that
// half is kept.
type Key struct {
	Public []byte
	Prove  func(possessionKey, nonce []byte) ([]byte, error)
}

// InMemory is the key pair whose private half is priv, held by the caller.
func InMemory(priv []byte) (Key, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return Key{}, fmt.Errorf("enrol: key: %w", err)
	}
	pub := k.PublicKey().Bytes()
	return Key{Public: pub, Prove: func(possessionKey, nonce []byte) ([]byte, error) {
		return api.Prove(priv, possessionKey, nonce, pub)
	}}, nil
}

// Retry bounds how an enrolment moves between coordinators: every coordinator
// the client knows is tried in turn, for up to Rounds rounds (0: 6) with a
// backoff between them doubling from Backoff (0: 250 ms) up to 5 s, until
// ctx ends. The package's functions use the defaults.
type Retry struct {
	Rounds  int
	Backoff time.Duration
}

func (r Retry) rounds() int {
	if r.Rounds <= 0 {
		return 6
	}
	return r.Rounds
}

func (r Retry) backoff() time.Duration {
	if r.Backoff <= 0 {
		return 250 * time.Millisecond
	}
	return r.Backoff
}

// Workload enrols with TEE evidence from issuer.
func Workload(ctx context.Context, c *api.Client, issuer attest.Issuer, w api.Workload) (*Enrolment, error) {
	return Retry{}.Workload(ctx, c, issuer, w)
}

// Workload enrols with TEE evidence from issuer, retrying as r says.
func (r Retry) Workload(ctx context.Context, c *api.Client, issuer attest.Issuer, w api.Workload) (*Enrolment, error) {
	return r.run(ctx, c, proveWorkload(issuer, w))
}

func proveWorkload(issuer attest.Issuer, w api.Workload) func(*api.EnrolRequest) error {
	return func(req *api.EnrolRequest) error {
		req.Workload = w
		ev, err := issuer.Evidence(attest.ReportData(req.Nonce, req.PublicKey, req.Binding()))
		if err != nil {
			return fmt.Errorf("enrol: %s evidence: %w", issuer.Platform(), err)
		}
		req.Evidence = &api.Evidence{Platform: ev.Platform, Data: ev.Data}
		return nil
	}
}

// Renew enrols the same public key again with fresh evidence: a renewed
// certificate (same address, as the key holds its lease) or a manifest's
// changes for a running tunnel. The private key stays where it is: key
// proves its possession.
func Renew(ctx context.Context, c *api.Client, issuer attest.Issuer, w api.Workload, key Key) (*api.EnrolResponse, error) {
	return Retry{}.Renew(ctx, c, issuer, w, key)
}

// Renew is the package's Renew, retrying as r says.
func (r Retry) Renew(ctx context.Context, c *api.Client, issuer attest.Issuer, w api.Workload, key Key) (*api.EnrolResponse, error) {
	return r.runWithKey(ctx, c, key, proveWorkload(issuer, w))
}

// RenewAt is when to renew a certificate received at now: two thirds of the way
// to its expiry (its NotBefore is backdated for clock skew, so the lifetime it
// states would say too early).
func RenewAt(now, notAfter time.Time) time.Time {
	return now.Add(notAfter.Sub(now) * 2 / 3)
}

// Join enrols a new key pair with a join token (a lighthouse, or a host of a
// joinToken role). The client is pinned to the token's mesh first: a
// coordinator of another mesh is found out by the nonce's answer, before
// the secret is sent.
func Join(ctx context.Context, c *api.Client, token string) (*Enrolment, error) {
	t, err := jointoken.Parse(token)
	if err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	return Retry{}.run(ctx, c.ExpectingMesh(t.MeshID), proveToken(t))
}

// JoinPublic enrols public, a key made elsewhere (stock nebula-cert
// keygen), with a join token: without the private key there is no proof of
// possession, which the token stands in for the first time; renewals
// (RenewCertificate) prove it.
func JoinPublic(ctx context.Context, c *api.Client, token string, public []byte) (*api.EnrolResponse, error) {
	t, err := jointoken.Parse(token)
	if err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	key := Key{Public: public, Prove: func(_, _ []byte) ([]byte, error) { return nil, nil }}
	return Retry{}.runWithKey(ctx, c.ExpectingMesh(t.MeshID), key, proveToken(t))
}

// RenewCertificate renews the certificate certPEM of a host a join token
// admitted, with its key and without the token: rotating or using up the
// token never stops a running host.
func RenewCertificate(ctx context.Context, c *api.Client, certPEM string, key Key) (*api.EnrolResponse, error) {
	return Retry{}.runWithKey(ctx, c, key, func(req *api.EnrolRequest) error {
		req.Certificate = certPEM
		return nil
	})
}

func proveToken(t jointoken.Token) func(*api.EnrolRequest) error {
	return func(req *api.EnrolRequest) error {
		req.JoinToken = t.String()
		return nil
	}
}

// run enrols with one key pair: an enrolment that fails on one coordinator is
// retried on the next with a fresh nonce from that coordinator and the same
// key, so a retry after a lost answer gets the same address, not a second one.
func (r Retry) run(ctx context.Context, c *api.Client, prove func(*api.EnrolRequest) error) (*Enrolment, error) {
	start := time.Now()
	priv, _, err := KeyPair()
	if err != nil {
		return nil, err
	}
	since(ctx, "key", start)
	key, err := InMemory(priv)
	if err != nil {
		return nil, err
	}
	resp, err := r.runWithKey(ctx, c, key, prove)
	if err != nil {
		return nil, err
	}
	return &Enrolment{EnrolResponse: resp, PrivateKey: priv}, nil
}

func (r Retry) runWithKey(ctx context.Context, c *api.Client, key Key, prove func(*api.EnrolRequest) error) (*api.EnrolResponse, error) {
	var errs []error
	wait := r.backoff()
	for round := 0; round < r.rounds(); round++ {
		if round > 0 {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("enrol: %w", errors.Join(append(errs, ctx.Err())...))
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
		for _, one := range c.Coordinators(ctx) {
			resp, proved, err := once(ctx, one, key, prove)
			if err == nil {
				return resp, nil
			}
			if !proved || !api.Retryable(err) || ctx.Err() != nil {
				return nil, fmt.Errorf("enrol: %w", err)
			}
			errs = append(errs, err)
		}
	}
	return nil, fmt.Errorf("enrol: no coordinator enrolled this workload: %w", errors.Join(errs...))
}

// once enrols at one coordinator; proved is false when this side could not
// make its proof (no point in asking another coordinator).
// The nonce is one the coordinator's last answer carried when there is one,
// which saves asking; if the coordinator no longer knows it (it restarted),
// the enrolment is made again here with a nonce asked for.
func once(ctx context.Context, c *api.Client, key Key, prove func(*api.EnrolRequest) error) (*api.EnrolResponse, bool, error) {
	start := time.Now()
	n, spare, err := c.EnrolNonce(ctx)
	since(ctx, "nonce", start)
	for {
		if err != nil {
			return nil, true, err
		}
		start = time.Now()
		req := &api.EnrolRequest{Nonce: n.Nonce, PublicKey: key.Public}
		if req.Proof, err = key.Prove(n.PossessionKey, n.Nonce); err != nil {
			return nil, false, err
		}
		if err := prove(req); err != nil {
			return nil, false, err
		}
		since(ctx, "evidence", start)
		start = time.Now()
		resp, enrolErr := c.Enrol(ctx, req)
		since(ctx, "enrol", start)
		if !spare || !api.NonceRefused(enrolErr) {
			return resp, true, enrolErr
		}
		start = time.Now()
		n, err = c.Nonce(ctx)
		since(ctx, "nonce", start)
		spare = false
	}
}
