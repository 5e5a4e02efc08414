// Package kbs serves the attestation handshake of the Confidential
// Containers Key Broker Service protocol (trustee's KBS, "RCAR": request,
// challenge, attestation, response) and the credential resource of its
// nebula-ca plugin, so that a CoCo guest whose guest components ask a KBS
// for a Nebula credential can enrol with a sealmesh coordinator instead.
//
//	POST /kbs/v0/auth                 Request      → Challenge, cookie kbs-session-id
//	POST /kbs/v0/attest               Attestation  → {"token": JWT}
//	GET  /kbs/v0/nebula-ca/credential ?name&ip&…   → JWE of {node_crt, node_key, ca_crt}
//
// What differs from trustee (docs/protocol.md, "KBS"):
//   - name, IP and groups are assigned by the manifest, as for every host;
//     query parameters that disagree with the assignment are refused (the
//     credential made is given back), never obeyed; subnets and duration
//     are refused outright;
//   - with public_key (the guest's X25519 key) the coordinator signs that
//     key and makes no private key; without it, it makes the key pair, as
//     trustee does, and returns it only inside the JWE;
//   - evidence is checked by the coordinator against the manifest's roles,
//     not by an attestation service; the runtime data is bound into the
//     evidence's report data as sha384 of its canonical JSON (trustee's
//     default), and the evidence formats are tdx (CoCo's: the quote),
//     snp and sealmesh-simulated (go-sev-guest's attestation, base64);
//   - sessions and tokens are good at the coordinator that made them.
package kbs

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/enrol"
)

// The routes, as trustee's KBS serves them (the plugin at /kbs/v0/<plugin>/).
const (
	PathAuth       = "/kbs/v0/auth"
	PathAttest     = "/kbs/v0/attest"
	PathCredential = "/kbs/v0/nebula-ca/credential"
	// Cookie names the session, as the protocol has it.
	Cookie = "kbs-session-id"
)

// TEE names a guest sends in Request.TEE, with the platform each is checked as.
var tees = map[string]string{
	"tdx":                attest.PlatformTDX,
	"snp":                attest.PlatformSNP,
	"sealmesh-simulated": attest.PlatformSimulated,
}

const (
	// sessionLifetime bounds a session: from the challenge to the last
	// credential asked for with it.
	sessionLifetime = 5 * time.Minute
	// maxSessions bounds what unauthenticated requests can make the
	// coordinator keep.
	maxSessions = 10_000
)

// Request is the guest's first message.
type Request struct {
	Version     string          `json:"version"`
	TEE         string          `json:"tee"`
	ExtraParams json.RawMessage `json:"extra-params,omitempty"`
}

// Challenge answers it.
type Challenge struct {
	Nonce       string         `json:"nonce"`
	ExtraParams map[string]any `json:"extra-params"`
}

// Attestation is the guest's evidence for the challenge.
type Attestation struct {
	InitData    json.RawMessage `json:"init-data,omitempty"`
	RuntimeData json.RawMessage `json:"runtime-data"`
	TEEEvidence struct {
		PrimaryEvidence    json.RawMessage `json:"primary_evidence"`
		AdditionalEvidence string          `json:"additional_evidence,omitempty"`
	} `json:"tee-evidence"`
}

// RuntimeData is what the evidence commits to: the challenge's nonce and
// the key the answer is encrypted to.
type RuntimeData struct {
	Nonce     string          `json:"nonce"`
	TEEPubKey json.RawMessage `json:"tee-pubkey"`
}

// Evidence is the primary evidence: a TDX quote (CoCo's attester sends it
// so), or a go-sev-guest attestation (report and certificates, protobuf).
type Evidence struct {
	Quote       string `json:"quote,omitempty"`
	Attestation string `json:"attestation,omitempty"`
}

// Credential is the nebula-ca plugin's answer; byte fields are JSON arrays
// of numbers, as trustee's serde encodes Vec<u8>.
type Credential struct {
	NodeCrt Bytes `json:"node_crt"`
	NodeKey Bytes `json:"node_key"`
	CACrt   Bytes `json:"ca_crt"`
}

// Bytes encodes as a JSON array of numbers.
type Bytes []byte

// MarshalJSON writes b as an array of numbers.
func (b Bytes) MarshalJSON() ([]byte, error) {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads an array of numbers.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var in []int
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	*b = make([]byte, len(in))
	for i, c := range in {
		if c < 0 || c > 255 {
			return fmt.Errorf("kbs: byte %d out of range", c)
		}
		(*b)[i] = byte(c)
	}
	return nil
}

// ErrorInfo is the body of every refusal, as trustee's ErrorInformation.
type ErrorInfo struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

// Issuer is the enrolment service as the KBS needs it.
type Issuer interface {
	Admit(ctx context.Context, ev api.Evidence, w api.Workload, reportData [64]byte) (enrol.Admission, error)
	IssueFor(ctx context.Context, a enrol.Admission, publicKey []byte) (*api.EnrolResponse, error)
	ReleaseLease(ctx context.Context, e *api.EnrolResponse) error
}

// Server serves the KBS protocol.
type Server struct {
	log    *slog.Logger
	issuer Issuer
	now    func() time.Time
	signer jose.Signer
	pub    jose.JSONWebKey

	mu       sync.Mutex
	sessions map[string]*session
}

type session struct {
	tee     string
	nonce   string // "" once used: a nonce answers one attestation
	expires time.Time
	// Set once attested.
	admitted *enrol.Admission
	teeKey   *jose.JSONWebKey
}

// New makes the server; its token signing key lives in this process only.
func New(log *slog.Logger, issuer Issuer, now func() time.Time) (*Server, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	return &Server{log: log, issuer: issuer, now: now, signer: signer,
		pub: jose.JSONWebKey{Key: &k.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}, sessions: map[string]*session{}}, nil
}

// Routes are the calls served, as docs/protocol.md's KBS table lists them.
var Routes = []string{"POST " + PathAuth, "POST " + PathAttest, "GET " + PathCredential}

// Handler serves the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for i, h := range []http.HandlerFunc{s.auth, s.attest, s.credential} {
		mux.HandleFunc(Routes[i], h)
	}
	return mux
}

func (s *Server) auth(w http.ResponseWriter, r *http.Request) {
	var req Request
	if err := decode(r, &req); err != nil {
		refuse(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	if !strings.HasPrefix(req.Version, "0.") {
		refuse(w, http.StatusUnauthorized, "ProtocolVersion", fmt.Sprintf("protocol version %q: this KBS speaks 0.x", req.Version))
		return
	}
	if _, ok := tees[req.TEE]; !ok {
		refuse(w, http.StatusUnauthorized, "UnsupportedTee", fmt.Sprintf("tee %q: want one of tdx, snp, sealmesh-simulated", req.TEE))
		return
	}
	id, nonce := random(16), base64.StdEncoding.EncodeToString(randomBytes(32))
	now := s.now()
	s.mu.Lock()
	if len(s.sessions) >= maxSessions {
		for k, v := range s.sessions {
			if now.After(v.expires) {
				delete(s.sessions, k)
			}
		}
	}
	full := len(s.sessions) >= maxSessions
	if !full {
		s.sessions[id] = &session{tee: req.TEE, nonce: nonce, expires: now.Add(sessionLifetime)}
	}
	s.mu.Unlock()
	if full {
		refuse(w, http.StatusServiceUnavailable, "TooManySessions", "too many sessions in progress; retry")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: Cookie, Value: id, Path: "/kbs", Expires: now.Add(sessionLifetime), HttpOnly: true})
	reply(w, Challenge{Nonce: nonce, ExtraParams: map[string]any{}})
}

func (s *Server) attest(w http.ResponseWriter, r *http.Request) {
	id, sess := s.session(r)
	if sess == nil {
		refuse(w, http.StatusUnauthorized, "InvalidCookie", "no session: POST "+PathAuth+" first")
		return
	}
	// The nonce is spent by this attempt, whatever its outcome: evidence
	// is never checked twice against one challenge.
	s.mu.Lock()
	nonce := sess.nonce
	sess.nonce = ""
	s.mu.Unlock()
	if nonce == "" {
		refuse(w, http.StatusUnauthorized, "NonceUsed", "this session's challenge was answered already: POST "+PathAuth+" for a new one")
		return
	}
	var a Attestation
	if err := decode(r, &a); err != nil {
		refuse(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	var rt RuntimeData
	if err := json.Unmarshal(a.RuntimeData, &rt); err != nil {
		refuse(w, http.StatusBadRequest, "InvalidRequest", "runtime-data: "+err.Error())
		return
	}
	if rt.Nonce != nonce {
		refuse(w, http.StatusUnauthorized, "NonceMismatch", "runtime-data.nonce is not this session's challenge")
		return
	}
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(rt.TEEPubKey); err != nil || !key.IsPublic() || !encryptable(&key) {
		refuse(w, http.StatusBadRequest, "InvalidTeePubKey", fmt.Sprintf("runtime-data.tee-pubkey: want an EC P-256 or RSA public JWK (%v)", err))
		return
	}
	rd, err := ReportData(a.RuntimeData)
	if err != nil {
		refuse(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	ev, err := evidence(sess.tee, a.TEEEvidence.PrimaryEvidence)
	if err != nil {
		refuse(w, http.StatusBadRequest, "InvalidEvidence", err.Error())
		return
	}
	adm, err := s.issuer.Admit(r.Context(), ev, api.Workload{}, rd)
	if err != nil {
		refuse(w, status(err), "AttestationFailed", err.Error())
		return
	}
	now := s.now()
	token, err := jwt.Signed(s.signer).Claims(jwt.Claims{
		Issuer: "sealmesh-coordinator", ID: id, IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(sess.expires),
	}).Claims(map[string]any{"tee-pubkey": &key, "jwk": &s.pub, "sealmesh-role": adm.Role()}).Serialize()
	if err != nil {
		refuse(w, http.StatusInternalServerError, "Internal", err.Error())
		return
	}
	s.mu.Lock()
	sess.admitted, sess.teeKey = &adm, &key
	s.mu.Unlock()
	s.log.Info("kbs: attested", "tee", sess.tee, "role", adm.Role())
	reply(w, map[string]string{"token": token})
}

func (s *Server) credential(w http.ResponseWriter, r *http.Request) {
	_, sess := s.session(r)
	if sess == nil {
		refuse(w, http.StatusUnauthorized, "TokenNotFound", "no attested session: send its cookie or its token (Authorization: Bearer)")
		return
	}
	s.mu.Lock()
	adm, teeKey := sess.admitted, sess.teeKey
	s.mu.Unlock()
	if adm == nil {
		refuse(w, http.StatusUnauthorized, "NotAttested", "the session has not attested: POST "+PathAttest+" first")
		return
	}
	q := r.URL.Query()
	for _, p := range []string{"subnets", "duration"} {
		if q.Has(p) {
			refuse(w, http.StatusForbidden, "PolicyDeny", p+": set by the manifest, not by the request")
			return
		}
	}
	var pub, priv []byte
	if k := q.Get("public_key"); k != "" {
		b, err := decodeKey(k)
		if err != nil {
			refuse(w, http.StatusBadRequest, "InvalidRequest", "public_key: "+err.Error())
			return
		}
		pub = b
	} else {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			refuse(w, http.StatusInternalServerError, "Internal", err.Error())
			return
		}
		pub, priv = k.PublicKey().Bytes(), k.Bytes()
	}
	e, err := s.issuer.IssueFor(r.Context(), *adm, pub)
	if err != nil {
		code := http.StatusForbidden
		if errors.Is(err, api.ErrNotReady) {
			code = http.StatusServiceUnavailable
		}
		refuse(w, code, "PolicyDeny", err.Error())
		return
	}
	if why := disagrees(q, e); why != "" {
		if err := s.issuer.ReleaseLease(r.Context(), e); err != nil {
			s.log.Warn("kbs: giving back a refused credential", "err", err)
		}
		refuse(w, http.StatusForbidden, "PolicyDeny", why)
		return
	}
	out := Credential{NodeCrt: Bytes(e.Certificate), CACrt: Bytes(e.CA)}
	if priv != nil {
		out.NodeKey = cert.MarshalPrivateKeyToPEM(cert.Curve_CURVE25519, priv)
	}
	plain, _ := json.Marshal(out)
	jwe, err := encrypt(teeKey, plain)
	if err != nil {
		refuse(w, http.StatusInternalServerError, "Internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(jwe)
}

// disagrees says why the query's name, ip or groups are not what the
// manifest assigned, or "".
func disagrees(q map[string][]string, e *api.EnrolResponse) string {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if n := get("name"); n != "" && n != e.Name {
		return fmt.Sprintf("name %q: the manifest names this host %s", n, e.Name)
	}
	if ip := get("ip"); ip != "" {
		assigned := netip.MustParsePrefix(e.IP)
		p, err := netip.ParsePrefix(ip)
		if err != nil {
			a, aerr := netip.ParseAddr(ip)
			p, err = netip.PrefixFrom(a, assigned.Bits()), aerr
		}
		if err != nil || p != assigned {
			return fmt.Sprintf("ip %q: the manifest assigns this host %s", ip, e.IP)
		}
	}
	if g := get("groups"); g != "" {
		want := strings.Split(g, ",")
		slices.Sort(want)
		have := slices.Sorted(slices.Values(e.Groups))
		if !slices.Equal(want, have) {
			return fmt.Sprintf("groups %q: the manifest gives this host %s", g, strings.Join(e.Groups, ","))
		}
	}
	return ""
}

// session finds the request's session, by cookie or bearer token.
func (s *Server) session(r *http.Request) (string, *session) {
	id := ""
	if c, err := r.Cookie(Cookie); err == nil {
		id = c.Value
	} else if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		id = s.tokenSession(t)
	}
	if id == "" {
		return "", nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if sess == nil || s.now().After(sess.expires) {
		delete(s.sessions, id)
		return "", nil
	}
	return id, sess
}

// tokenSession is the session a token this server signed names, or "".
func (s *Server) tokenSession(raw string) string {
	t, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return ""
	}
	var c jwt.Claims
	if err := t.Claims(s.pub.Key, &c); err != nil {
		return ""
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: "sealmesh-coordinator", Time: s.now()}, 0); err != nil {
		return ""
	}
	return c.ID
}

// ReportData is what evidence for runtime-data raw must carry: sha384 of
// its canonical JSON (keys sorted, no spaces, as serde_json writes a
// Value), zero-padded to 64 bytes.
func ReportData(raw json.RawMessage) ([64]byte, error) {
	canon, err := Canonical(raw)
	if err != nil {
		return [64]byte{}, fmt.Errorf("runtime-data: %w", err)
	}
	var rd [64]byte
	sum := sha512.Sum384(canon)
	copy(rd[:], sum[:])
	return rd, nil
}

// Canonical re-encodes JSON with sorted keys, no insignificant space and
// no HTML escaping, numbers as they were written.
func Canonical(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(b.String(), "\n")), nil
}

// evidence maps a guest's primary evidence to a platform's.
func evidence(tee string, raw json.RawMessage) (api.Evidence, error) {
	var e Evidence
	if err := json.Unmarshal(raw, &e); err != nil {
		return api.Evidence{}, fmt.Errorf("tee-evidence.primary_evidence: %w", err)
	}
	field, what := e.Attestation, "attestation"
	if tee == "tdx" {
		field, what = e.Quote, "quote"
	}
	data, err := base64.StdEncoding.DecodeString(field)
	if err != nil || len(data) == 0 {
		return api.Evidence{}, fmt.Errorf("tee-evidence.primary_evidence.%s: want the %s evidence, base64", what, tee)
	}
	return api.Evidence{Platform: tees[tee], Data: data}, nil
}

// encryptable reports whether the answer can be encrypted to k.
func encryptable(k *jose.JSONWebKey) bool {
	switch p := k.Key.(type) {
	case *ecdsa.PublicKey:
		return p.Curve == elliptic.P256()
	case *rsa.PublicKey:
		return p.N.BitLen() >= 2048
	}
	return false
}

// encrypt makes the JWE (flattened JSON) of plain for k: ECDH-ES+A256KW for
// an EC key, the JWK's RSA algorithm (RSA-OAEP-256 unless it names RSA1_5)
// for an RSA key; A256GCM for the content.
func encrypt(k *jose.JSONWebKey, plain []byte) ([]byte, error) {
	alg := jose.ECDH_ES_A256KW
	if _, ok := k.Key.(*rsa.PublicKey); ok {
		alg = jose.RSA_OAEP_256
		if k.Algorithm == string(jose.RSA1_5) {
			alg = jose.RSA1_5
		}
	}
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: alg, Key: k.Key}, nil)
	if err != nil {
		return nil, err
	}
	obj, err := enc.Encrypt(plain)
	if err != nil {
		return nil, err
	}
	return []byte(obj.FullSerialize()), nil
}

func decodeKey(s string) ([]byte, error) {
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding} {
		if b, err := e.DecodeString(s); err == nil {
			if len(b) != 32 {
				return nil, fmt.Errorf("want a 32-byte X25519 key, got %d bytes", len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("want a 32-byte X25519 key, base64")
}

// status is the HTTP status of an enrolment error.
func status(err error) int {
	switch {
	case errors.Is(err, api.ErrNotReady):
		return http.StatusServiceUnavailable
	case errors.Is(err, api.ErrBadInput):
		return http.StatusBadRequest
	}
	return http.StatusUnauthorized
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	return dec.Decode(v)
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func refuse(w http.ResponseWriter, code int, kind, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(ErrorInfo{Type: "sealmesh:kbs:" + kind, Detail: detail})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return b
}

func random(n int) string { return hex.EncodeToString(randomBytes(n)) }
