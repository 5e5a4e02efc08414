// Package atls is attested TLS: a TLS 1.3 server whose certificate carries TEE
// evidence bound to the certificate's public key and to a nonce the client chose
// for this handshake, so a client knows it talks to code the policy names, running
// in a TEE, and not to a replay or a relay with another key.
//
// Wire format (docs/attested-tls.md): the client puts a fresh 32-byte nonce in the
// ClientHello's server name, as "<32 hex>.<32 hex>.atls.sealmesh"; the server
// answers with a self-signed certificate, made for this handshake, whose extension
// 1.3.6.1.4.1.57264.1.1 holds JSON {"platform", "data"} evidence with report data
// attest.ReportData(nonce, SubjectPublicKeyInfo DER, "sealmesh atls v1").
package atls

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sealmesh/sealmesh/attest"
)

// OID of the certificate extension carrying the evidence.
var OID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}

const (
	nameSuffix     = ".atls.sealmesh"
	bindingContext = "sealmesh atls v1"
)

// Server returns a TLS configuration that attests with issuer on every handshake.
// The TLS key is made here and lives only in memory.
func Server(issuer attest.Issuer) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Every connection gets fresh evidence for its own nonce.
		SessionTicketsDisabled: true,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			nonce, err := parseName(hello.ServerName)
			if err != nil {
				return nil, err
			}
			ev, err := issuer.Evidence(attest.ReportData(nonce, spki, []byte(bindingContext)))
			if err != nil {
				return nil, fmt.Errorf("atls: evidence: %w", err)
			}
			ext, err := json.Marshal(ev)
			if err != nil {
				return nil, err
			}
			now := time.Now()
			tmpl := &x509.Certificate{
				SerialNumber:    big.NewInt(now.UnixNano()),
				Subject:         pkix.Name{CommonName: "sealmesh attested TLS"},
				NotBefore:       now.Add(-time.Minute),
				NotAfter:        now.Add(time.Hour),
				KeyUsage:        x509.KeyUsageDigitalSignature,
				ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				ExtraExtensions: []pkix.Extension{{Id: OID, Value: ext}},
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			if err != nil {
				return nil, err
			}
			return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
		},
	}, nil
}

// Client returns a TLS configuration for one connection: it sends a fresh nonce
// and accepts the server only if its certificate carries evidence, bound to that
// nonce and to the certificate's key, whose claims pass accept. Make one per
// connection (the nonce is the handshake's).
func Client(accept func(*attest.Claims) error) (*tls.Config, error) {
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	h := hex.EncodeToString(nonce)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: h[:32] + "." + h[32:] + nameSuffix,
		// The certificate is self-signed by design: trust comes from the
		// evidence inside it, checked below, not from a CA.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("atls: the server sent no certificate")
			}
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("atls: server certificate: %w", err)
			}
			// The handshake itself proves the server holds this certificate's
			// key; the evidence proves the TEE vouched for exactly this key.
			claims, err := Verify(c, nonce)
			if err != nil {
				return err
			}
			if err := accept(claims); err != nil {
				return fmt.Errorf("atls: server attested, but not as the policy requires: %w", err)
			}
			return nil
		},
	}, nil
}

// Verify checks the evidence in c for nonce and returns its claims.
func Verify(c *x509.Certificate, nonce []byte) (*attest.Claims, error) {
	var ext []byte
	for _, e := range c.Extensions {
		if e.Id.Equal(OID) {
			ext = e.Value
		}
	}
	if ext == nil {
		return nil, errors.New("atls: the server certificate carries no evidence: not an attested server")
	}
	var ev attest.Evidence
	if err := json.Unmarshal(ext, &ev); err != nil {
		return nil, fmt.Errorf("atls: evidence extension: %w", err)
	}
	claims, err := attest.Verify(ev, attest.ReportData(nonce, c.RawSubjectPublicKeyInfo, []byte(bindingContext)))
	if err != nil {
		return nil, fmt.Errorf("atls: %w", err)
	}
	return claims, nil
}

func parseName(name string) ([]byte, error) {
	h, ok := strings.CutSuffix(name, nameSuffix)
	if !ok {
		return nil, fmt.Errorf("atls: server name %q carries no nonce: connect with an attested-TLS client", name)
	}
	nonce, err := hex.DecodeString(strings.Replace(h, ".", "", 1))
	if err != nil || len(nonce) != 32 {
		return nil, fmt.Errorf("atls: server name %q: bad nonce", name)
	}
	return nonce, nil
}

// Transport is an HTTP transport that makes every request on a fresh
// attested-TLS handshake (no connection reuse), accepting servers whose claims
// pass accept: a change of what accept allows takes effect at once.
func Transport(accept func(*attest.Claims) error) *http.Transport {
	return &http.Transport{
		DisableKeepAlives: true,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			cfg, err := Client(accept)
			if err != nil {
				return nil, err
			}
			return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2: false,
	}
}
