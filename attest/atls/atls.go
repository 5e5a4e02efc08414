// Package atls is attested TLS: TLS 1.3 whose certificates carry TEE evidence
// bound to the certificate's public key and to a nonce the other side chose for
// this handshake, so each side knows it talks to code a policy names, running in
// a TEE, and not to a replay or a relay with another key.
//
// Wire format (docs/attested-tls.md): the client puts a fresh 32-byte nonce in
// the ClientHello's server name, as "<32 hex>.<32 hex>.atls.sealmesh"; the server
// answers with a self-signed certificate, made for this handshake, whose extension
// 1.3.6.1.4.1.57264.1.1 holds JSON {"platform", "data"} evidence with report data
// attest.ReportData(client nonce, SubjectPublicKeyInfo DER, "sealmesh atls v1"),
// and whose extension 1.3.6.1.4.1.57264.1.2 holds a fresh 32-byte server nonce.
// A client that attests too answers the server's certificate request with a
// certificate of the same shape, its evidence bound to the server nonce and its
// own key under the context "sealmesh atls client v1".
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
	"sync"
	"time"

	"github.com/sealmesh/sealmesh/attest"
)

var (
	// OID of the certificate extension carrying the evidence.
	OID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	// NonceOID is the extension of the server certificate carrying the nonce a
	// client's evidence must be bound to.
	NonceOID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 2}
)

const (
	nameSuffix = ".atls.sealmesh"
	// The contexts keep a server's evidence from passing as a client's and
	// either from passing as an enrolment's.
	serverContext = "sealmesh atls v1"
	clientContext = "sealmesh atls client v1"
	// verifyTimeout bounds the check of a client's evidence in a handshake
	// (fetching collateral, where allowed, can take a while).
	verifyTimeout = 20 * time.Second
)

// VerifyFunc checks evidence for report data, as (*attest.Verifier).Verify does
// with its caches.
type VerifyFunc func(ctx context.Context, ev attest.Evidence, reportData [64]byte) (*attest.Claims, error)

// Server is an attested-TLS server: it attests with its TEE on every handshake
// and asks the client for a certificate; a client that sends one must attest,
// and its verified claims reach the handler through PeerClaims. Which claims a
// handler accepts is its own decision, made against what it serves.
type Server struct {
	// TLS is the configuration to serve with.
	TLS *tls.Config

	issuer attest.Issuer
	verify VerifyFunc
	key    *ecdsa.PrivateKey
	spki   []byte
	// slots hands each connection's peer record from ConnContext (called on
	// accept, before the handshake) to the handshake, keyed by the raw
	// connection.
	slots sync.Map
}

type peer struct {
	claims *attest.Claims
}

type peerKey struct{}

// NewServer makes a server that attests with issuer and checks clients'
// evidence with verify (attest.Verify with no caches if nil). The TLS key is
// made here and lives only in memory.
// PublicKey is the server's TLS key (DER SubjectPublicKeyInfo): what its
// evidence binds every handshake to, and the attest endpoint's answers too.
func (s *Server) PublicKey() []byte { return s.spki }

func NewServer(issuer attest.Issuer, verify VerifyFunc) (*Server, error) {
	key, spki, err := newKey()
	if err != nil {
		return nil, err
	}
	if verify == nil {
		verify = func(_ context.Context, ev attest.Evidence, rd [64]byte) (*attest.Claims, error) {
			return attest.Verify(ev, rd)
		}
	}
	s := &Server{issuer: issuer, verify: verify, key: key, spki: spki}
	s.TLS = &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Every connection gets fresh evidence for its own nonces.
		SessionTicketsDisabled: true,
		GetConfigForClient:     s.handshake,
	}
	return s, nil
}

// Configure makes srv serve attested TLS with s, its handlers seeing the
// clients' claims.
func (s *Server) Configure(srv *http.Server) {
	srv.TLSConfig = s.TLS
	srv.ConnContext = s.ConnContext
	next := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		s.ConnState(c, st)
		if next != nil {
			next(c, st)
		}
	}
}

// ConnContext is http.Server's hook: it gives the connection a peer record the
// handshake fills in.
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	p := &peer{}
	if tc, ok := c.(*tls.Conn); ok {
		s.slots.Store(tc.NetConn(), p)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// ConnState is http.Server's hook: it drops the record of a connection that
// closed before its handshake took it.
func (s *Server) ConnState(c net.Conn, st http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok && (st == http.StateClosed || st == http.StateHijacked) {
		s.slots.Delete(tc.NetConn())
	}
}

// PeerClaims returns what the client of the request in ctx attested to, or nil
// when it did not attest (no client certificate).
func PeerClaims(ctx context.Context) *attest.Claims {
	if p, ok := ctx.Value(peerKey{}).(*peer); ok {
		return p.claims
	}
	return nil
}

// handshake makes the configuration of one handshake: a certificate with
// evidence for the client's nonce, and a nonce of its own for the client.
func (s *Server) handshake(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	clientNonce, err := parseName(hello.ServerName)
	if err != nil {
		return nil, err
	}
	p := &peer{}
	if v, ok := s.slots.LoadAndDelete(hello.Conn); ok {
		p = v.(*peer)
	}
	serverNonce := make([]byte, 32)
	if _, err := rand.Read(serverNonce); err != nil {
		return nil, err
	}
	ev, err := s.issuer.Evidence(attest.ReportData(clientNonce, s.spki, []byte(serverContext)))
	if err != nil {
		return nil, fmt.Errorf("atls: evidence: %w", err)
	}
	nonceExt, err := asn1.Marshal(serverNonce)
	if err != nil {
		return nil, err
	}
	cert, err := certificate(s.key, ev, x509.ExtKeyUsageServerAuth, pkix.Extension{Id: NonceOID, Value: nonceExt})
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
		Certificates:           []tls.Certificate{cert},
		// Optional: agents enrolling pods prove them in the request; peers
		// asking for keys prove themselves here.
		ClientAuth: tls.RequestClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return nil
			}
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("atls: client certificate: %w", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
			defer cancel()
			claims, err := verifyCert(ctx, c, serverNonce, clientContext, nil, s.verify)
			if err != nil {
				return fmt.Errorf("atls: client: %w", err)
			}
			p.claims = claims
			return nil
		},
	}, nil
}

// newKey makes a TLS key and its SubjectPublicKeyInfo, which evidence binds.
func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	return key, spki, err
}

// certificate makes a self-signed certificate for key carrying ev.
func certificate(key *ecdsa.PrivateKey, ev attest.Evidence, usage x509.ExtKeyUsage, exts ...pkix.Extension) (tls.Certificate, error) {
	ext, err := json.Marshal(ev)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:    serial,
		Subject:         pkix.Name{CommonName: "sealmesh attested TLS"},
		NotBefore:       now.Add(-time.Minute),
		NotAfter:        now.Add(time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtKeyUsage:     []x509.ExtKeyUsage{usage},
		ExtraExtensions: append([]pkix.Extension{{Id: OID, Value: ext}}, exts...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Client returns a TLS configuration for one connection: it sends a fresh nonce
// and accepts the server only if its certificate carries evidence of a platform
// the policy names, bound to that nonce and to the certificate's key, whose
// claims the policy accepts. With self, the
// client attests too, with evidence bound to the server's nonce and its own TLS
// key. Make one per connection (the nonces are the handshake's).
func Client(policy attest.Policy, self attest.Issuer) (*tls.Config, error) {
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	h := hex.EncodeToString(nonce)
	var serverNonce []byte
	cfg := &tls.Config{
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
			claims, err := Verify(c, nonce, policy)
			if err != nil {
				return err
			}
			if err := policy.Accept(claims); err != nil {
				return fmt.Errorf("atls: server attested, but not as the policy requires: %w", err)
			}
			serverNonce = extension(c, NonceOID)
			return nil
		},
	}
	if self != nil {
		// TLS 1.3 sends the client's certificate after checking the server's,
		// so the server's nonce is known here.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			var n []byte
			if _, err := asn1.Unmarshal(serverNonce, &n); err != nil || len(n) != 32 {
				return nil, errors.New("atls: the server sent no nonce to attest to (an attested-TLS server before client attestation?)")
			}
			key, spki, err := newKey()
			if err != nil {
				return nil, err
			}
			ev, err := self.Evidence(attest.ReportData(n, spki, []byte(clientContext)))
			if err != nil {
				return nil, fmt.Errorf("atls: own evidence: %w", err)
			}
			cert, err := certificate(key, ev, x509.ExtKeyUsageClientAuth)
			return &cert, err
		}
	}
	return cfg, nil
}

// Verify checks the evidence in a server certificate c for the client's nonce
// and returns its claims. Evidence of a platform the policy does not name is
// refused before it is parsed.
func Verify(c *x509.Certificate, nonce []byte, policy attest.Policy) (*attest.Claims, error) {
	claims, err := verifyCert(context.Background(), c, nonce, serverContext, policy,
		func(_ context.Context, ev attest.Evidence, rd [64]byte) (*attest.Claims, error) {
			return attest.Verify(ev, rd)
		})
	if err != nil {
		return nil, fmt.Errorf("atls: server: %w", err)
	}
	return claims, nil
}

func verifyCert(ctx context.Context, c *x509.Certificate, nonce []byte, context string, policy attest.Policy, verify VerifyFunc) (*attest.Claims, error) {
	ext := extension(c, OID)
	if ext == nil {
		return nil, errors.New("the certificate carries no evidence: not an attested peer")
	}
	var ev attest.Evidence
	if err := json.Unmarshal(ext, &ev); err != nil {
		return nil, fmt.Errorf("evidence extension: %w", err)
	}
	if policy != nil && !policy.Platform(ev.Platform) {
		return nil, fmt.Errorf("evidence of platform %q, which the policy does not name: refused unparsed", ev.Platform)
	}
	return verify(ctx, ev, attest.ReportData(nonce, c.RawSubjectPublicKeyInfo, []byte(context)))
}

func extension(c *x509.Certificate, id asn1.ObjectIdentifier) []byte {
	for _, e := range c.Extensions {
		if e.Id.Equal(id) {
			return e.Value
		}
	}
	return nil
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
// the policy accepts: a change of what it allows takes effect at once. With self,
// the client attests in the handshake too. For the rare calls where that
// matters most (coordinator to coordinator); agents use Pool.
func Transport(policy attest.Policy, self attest.Issuer) *http.Transport {
	t := pooled(policy, self, nil)
	t.DisableKeepAlives = true
	return t
}

// Dialer makes the TCP connection an attested handshake runs over.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

func pooled(policy attest.Policy, self attest.Issuer, dial Dialer) *http.Transport {
	if dial == nil {
		// A short connect timeout: an unreachable coordinator should
		// cost seconds before a client moves to the next.
		dial = (&net.Dialer{Timeout: 3 * time.Second}).DialContext
	}
	return &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			cfg, err := Client(policy, self)
			if err != nil {
				return nil, err
			}
			raw, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c := tls.Client(raw, cfg)
			if err := c.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return c, nil
		},
		// HTTP/1.1: a request has a connection to itself. Go's HTTP/2
		// would carry an agent's requests on one connection, but it cost
		// the coordinator a quarter more CPU per enrolment (its per-stream
		// goroutines and frame writes; measured with BenchmarkCluster).
		ForceAttemptHTTP2: false,
		// Bounded: past poolPerHost requests at once, a request waits for
		// a connection instead of opening one. A stalled coordinator then
		// finds a queue, not a burst of handshakes (each an evidence report
		// and its verification) that would keep it from catching up.
		MaxConnsPerHost:     poolPerHost,
		MaxIdleConnsPerHost: poolPerHost,
		IdleConnTimeout:     poolIdle,
	}
}

const (
	// An agent enrolling a node's pods at once keeps a few connections
	// to each coordinator: four keep a coordinator's two cores busy, and
	// more would only queue there.
	poolPerHost = 4
	poolIdle    = 30 * time.Second
)

// Pool is an HTTP transport that reuses attested connections: a handshake
// costs the server an evidence report and the client its verification, so
// a busy agent should not pay them per request. Reset ends the reuse of every
// connection made so far; call it when what the policy allows changes, and the
// next request makes a fresh handshake that is checked against the new rule.
// A request already under way on an old connection finishes there, and that
// connection is never used again.
type Pool struct {
	policy attest.Policy
	self   attest.Issuer
	dial   Dialer
	mu     sync.Mutex
	cur    *http.Transport
}

// NewPool is a Pool accepting servers the policy accepts (and attesting as
// self, when not nil), connecting with dial (nil: TCP with a 3 s timeout).
func NewPool(policy attest.Policy, self attest.Issuer, dial Dialer) *Pool {
	return &Pool{policy: policy, self: self, dial: dial, cur: pooled(policy, self, dial)}
}

// RoundTrip sends req on a connection made since the last Reset.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	p.mu.Lock()
	t := p.cur
	p.mu.Unlock()
	return t.RoundTrip(req)
}

// Reset retires every connection: idle ones close now, busy ones when their
// request ends (their transport is no longer used, so its idle connections
// time out).
func (p *Pool) Reset() {
	p.mu.Lock()
	old := p.cur
	p.cur = pooled(p.policy, p.self, p.dial)
	p.mu.Unlock()
	old.CloseIdleConnections()
}

// CloseIdleConnections closes the idle connections (http.Client calls it).
func (p *Pool) CloseIdleConnections() {
	p.mu.Lock()
	t := p.cur
	p.mu.Unlock()
	t.CloseIdleConnections()
}
