// Package issuer holds the mesh's Nebula certificate authority. It signs public
// keys it is given; it never makes or sees a host's private key.
package issuer

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"net/netip"
	"time"

	"github.com/slackhq/nebula/cert"
)

// clockSkew backdates NotBefore so a host whose clock is a little behind accepts
// its fresh certificate.
const clockSkew = 5 * time.Minute

// CA is a Nebula v2 certificate authority whose key lives only in memory.
type CA struct {
	cert cert.Certificate
	key  ed25519.PrivateKey
	pem  []byte
}

// NewCA makes a CA certificate for key (derived from the seed, so it is never
// stored), constrained to networks and valid for lifetime.
func NewCA(key ed25519.PrivateKey, name string, networks []netip.Prefix, lifetime time.Duration, now time.Time) (*CA, error) {
	pub := key.Public().(ed25519.PublicKey)
	tbs := &cert.TBSCertificate{
		Version:   cert.Version2,
		Name:      name,
		Networks:  networks,
		IsCA:      true,
		NotBefore: now.Add(-clockSkew),
		NotAfter:  now.Add(lifetime),
		PublicKey: pub,
		Curve:     cert.Curve_CURVE25519,
	}
	c, err := tbs.Sign(nil, cert.Curve_CURVE25519, key)
	if err != nil {
		return nil, fmt.Errorf("issuer: sign CA: %w", err)
	}
	p, err := c.MarshalPEM()
	if err != nil {
		return nil, fmt.Errorf("issuer: CA PEM: %w", err)
	}
	return &CA{cert: c, key: key, pem: p}, nil
}

// LoadCA pairs a stored CA certificate with its key, checking they belong together.
func LoadCA(key ed25519.PrivateKey, certPEM []byte) (*CA, error) {
	c, _, err := cert.UnmarshalCertificateFromPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("issuer: CA certificate: %w", err)
	}
	if !c.IsCA() || !bytes.Equal(c.PublicKey(), key.Public().(ed25519.PublicKey)) {
		return nil, fmt.Errorf("issuer: the stored CA certificate does not belong to this mesh's CA key")
	}
	return &CA{cert: c, key: key, pem: certPEM}, nil
}

// PEM is the CA certificate, the trust anchor every host gets.
func (ca *CA) PEM() []byte { return ca.pem }

// Certificate is the CA certificate.
func (ca *CA) Certificate() cert.Certificate { return ca.cert }

// Fingerprint is the CA certificate's fingerprint as Nebula prints it.
func (ca *CA) Fingerprint() string {
	fp, _ := ca.cert.Fingerprint()
	return fp
}

// Host describes the certificate to issue. All of it comes from the manifest and
// the allocator; only PublicKey comes from the requester.
type Host struct {
	Name      string
	Networks  []netip.Prefix // the host's address in each overlay network
	Groups    []string
	PublicKey []byte // X25519, 32 bytes
	NotAfter  time.Time
}

// Sign issues a host certificate. NotAfter is clipped to the CA's own expiry, as
// Nebula refuses certificates that outlive their issuer.
func (ca *CA) Sign(h Host, now time.Time) (cert.Certificate, error) {
	if len(h.PublicKey) != 32 {
		return nil, fmt.Errorf("issuer: public key is %d bytes, want a 32-byte X25519 key", len(h.PublicKey))
	}
	notAfter := h.NotAfter
	if caEnd := ca.cert.NotAfter(); notAfter.After(caEnd) {
		notAfter = caEnd
	}
	notBefore := now.Add(-clockSkew)
	if caStart := ca.cert.NotBefore(); notBefore.Before(caStart) {
		notBefore = caStart
	}
	tbs := &cert.TBSCertificate{
		Version:   cert.Version2,
		Name:      h.Name,
		Networks:  h.Networks,
		Groups:    h.Groups,
		NotBefore: notBefore,
		NotAfter:  notAfter,
		PublicKey: h.PublicKey,
		Curve:     cert.Curve_CURVE25519,
	}
	c, err := tbs.Sign(ca.cert, cert.Curve_CURVE25519, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issuer: sign %s: %w", h.Name, err)
	}
	return c, nil
}
