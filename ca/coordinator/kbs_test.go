package coordinator_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest/simulated"
)

// kbsClient is a Key Broker Client written from the KBS attestation
// protocol's documentation (trustee's kbs_attestation_protocol.md and the
// nebula-ca plugin's): request, challenge, attestation with an ephemeral
// EC key bound into the evidence through the runtime data's hash, then the
// plugin's credential as a JWE encrypted to that key. Nothing of package
// kbs is used.
type kbsClient struct {
	t      *testing.T
	base   string
	http   *http.Client
	key    *ecdsa.PrivateKey
	nonce  string
	token  string
	attest []byte // the last Attestation payload sent
}

func newKBSClient(t *testing.T, base string) *kbsClient {
	jar, _ := cookiejar.New(nil)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &kbsClient{t: t, base: base, http: &http.Client{Jar: jar}, key: k}
}

func (c *kbsClient) do(method, path string, body any, header ...string) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		if raw, ok := body.([]byte); ok {
			b = raw
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// auth is step 1 (Request → Challenge and the session cookie).
func (c *kbsClient) auth(tee string) {
	c.t.Helper()
	code, out := c.do("POST", "/kbs/v0/auth", map[string]any{"version": "0.4.0", "tee": tee, "extra-params": ""})
	var ch struct {
		Nonce string `json:"nonce"`
	}
	if code != 200 || json.Unmarshal(out, &ch) != nil || ch.Nonce == "" {
		c.t.Fatalf("auth: %d %s", code, out)
	}
	c.nonce = ch.Nonce
}

// attestWith is step 3 with evidence from dev over the runtime data (nonce
// and tee-pubkey), hashed with sha384 as the CoCo attester does, answering
// the given nonce.
func (c *kbsClient) attestWith(dev *simulated.Device, nonce string) (int, []byte) {
	c.t.Helper()
	pub := c.key.PublicKey
	ecdhPub, _ := pub.ECDH()
	raw := ecdhPub.Bytes() // 0x04 || X || Y
	runtime := map[string]any{"nonce": nonce, "tee-pubkey": map[string]string{
		"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW",
		"x": base64.RawURLEncoding.EncodeToString(raw[1:33]), "y": base64.RawURLEncoding.EncodeToString(raw[33:]),
	}}
	canon, _ := json.Marshal(runtime) // sorted keys, compact: serde_json's to_string of the same Value
	var rd [64]byte
	sum := sha512.Sum384(canon)
	copy(rd[:], sum[:])
	ev, err := dev.Evidence(rd)
	if err != nil {
		c.t.Fatal(err)
	}
	c.attest, _ = json.Marshal(map[string]any{
		"runtime-data": runtime,
		"tee-evidence": map[string]any{"primary_evidence": map[string]string{"attestation": base64.StdEncoding.EncodeToString(ev.Data)}, "additional_evidence": "{}"},
	})
	code, out := c.do("POST", "/kbs/v0/attest", c.attest)
	var tok struct {
		Token string `json:"token"`
	}
	if code == 200 && json.Unmarshal(out, &tok) == nil {
		c.token = tok.Token
	}
	return code, out
}

// credential is the nebula-ca plugin's credential, decrypted.
func (c *kbsClient) credential(query url.Values, header ...string) (int, map[string][]byte, []byte) {
	c.t.Helper()
	code, out := c.do("GET", "/kbs/v0/nebula-ca/credential?"+query.Encode(), nil, header...)
	if code != 200 {
		return code, nil, out
	}
	obj, err := jose.ParseEncryptedJSON(string(out), []jose.KeyAlgorithm{jose.ECDH_ES_A256KW}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		c.t.Fatalf("the credential is not a JWE: %v\n%s", err, out)
	}
	plain, err := obj.Decrypt(c.key)
	if err != nil {
		c.t.Fatalf("the credential does not decrypt with the TEE key: %v", err)
	}
	var fields map[string][]int
	if err := json.Unmarshal(plain, &fields); err != nil {
		c.t.Fatalf("credential %s: %v", plain, err)
	}
	got := map[string][]byte{}
	for k, v := range fields {
		for _, b := range v {
			got[k] = append(got[k], byte(b))
		}
	}
	return code, got, out
}

// TestKBSCredential: a guest that speaks trustee's KBS protocol gets a
// Nebula credential whose name, IP and groups the manifest assigns, only
// with valid evidence for its own challenge. Evidence for another nonce, a
// replayed attestation, a query asking for an IP, and a request without an
// attested session are refused. With public_key the coordinator signs the
// guest's key and sends no private key; the attestation token stands in
// for the cookie.
func TestKBSCredential(t *testing.T) {
	devices(t)
	h := readyHarness(t)
	c := newKBSClient(t, h.srv.URL)

	// No session: nothing.
	if code, _, out := c.credential(url.Values{}); code != http.StatusUnauthorized {
		t.Fatalf("a credential without a session: %d %s", code, out)
	}

	// Evidence for another nonce than the challenge's.
	c.auth("sealmesh-simulated")
	if code, out := c.attestWith(webDev, base64.StdEncoding.EncodeToString(make([]byte, 32))); code != http.StatusUnauthorized || !strings.Contains(string(out), "NonceMismatch") {
		t.Fatalf("evidence for another nonce: %d %s", code, out)
	}
	// The challenge is spent by that attempt.
	if code, out := c.attestWith(webDev, c.nonce); code != http.StatusUnauthorized || !strings.Contains(string(out), "NonceUsed") {
		t.Fatalf("a second answer to one challenge: %d %s", code, out)
	}
	// A stranger's evidence (a root no manifest pins).
	c.auth("sealmesh-simulated")
	if code, out := c.attestWith(strangerDev, c.nonce); code != http.StatusUnauthorized {
		t.Fatalf("a stranger's evidence: %d %s", code, out)
	}
	if code, _, out := c.credential(url.Values{}); code != http.StatusUnauthorized {
		t.Fatalf("a credential after a failed attestation: %d %s", code, out)
	}

	// Valid evidence for its challenge: a credential, as the manifest says.
	c.auth("sealmesh-simulated")
	if code, out := c.attestWith(webDev, c.nonce); code != 200 || c.token == "" {
		t.Fatalf("attest: %d %s", code, out)
	}
	code, _, out := c.credential(url.Values{"name": {"podA"}})
	if code != http.StatusForbidden || !strings.Contains(string(out), "the manifest names this host") {
		t.Fatalf("a name the manifest did not give: %d %s", code, out)
	}
	code, _, out = c.credential(url.Values{"ip": {"10.42.0.99/24"}})
	if code != http.StatusForbidden || !strings.Contains(string(out), "the manifest assigns this host") {
		t.Fatalf("an IP asked for: %d %s", code, out)
	}
	if code, _, out := c.credential(url.Values{"subnets": {"10.9.0.0/16"}}); code != http.StatusForbidden {
		t.Fatalf("subnets asked for: %d %s", code, out)
	}
	code, cred, out := c.credential(url.Values{})
	if code != 200 {
		t.Fatalf("credential: %d %s", code, out)
	}
	crt, _, err := cert.UnmarshalCertificateFromPEM(cred["node_crt"])
	if err != nil {
		t.Fatal(err)
	}
	pool, err := cert.NewCAPoolFromPEM(cred["ca_crt"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.VerifyCertificate(h.clock.now(), crt); err != nil {
		t.Fatalf("the credential's certificate does not verify against its CA: %v", err)
	}
	if fmt.Sprint(crt.Groups()) != "[web pods]" || !strings.HasPrefix(crt.Name(), "web-10-42-0-") {
		t.Fatalf("credential for %s %v, want role web's", crt.Name(), crt.Groups())
	}
	priv, _, _, err := cert.UnmarshalPrivateKeyFromPEM(cred["node_key"])
	if err != nil {
		t.Fatalf("node_key: %v", err)
	}
	k, _ := ecdh.X25519().NewPrivateKey(priv)
	if !bytes.Equal(k.PublicKey().Bytes(), crt.PublicKey()) {
		t.Fatal("node_key is not the certificate's key")
	}
	// The same IP the manifest assigned is no disagreement.
	ip := crt.Networks()[0].String()
	if code, _, out := c.credential(url.Values{"ip": {ip}, "public_key": {base64.StdEncoding.EncodeToString(k.PublicKey().Bytes())}}); code != 200 {
		t.Fatalf("the assigned IP asked for, with the same key: %d %s", code, out)
	}

	// The guest's own key, with the token instead of the cookie.
	guest, _ := ecdh.X25519().GenerateKey(rand.Reader)
	bearer := &kbsClient{t: t, base: h.srv.URL, http: &http.Client{}, key: c.key}
	code, cred, out = bearer.credential(url.Values{"public_key": {base64.StdEncoding.EncodeToString(guest.PublicKey().Bytes())}}, "Authorization", "Bearer "+c.token)
	if code != 200 {
		t.Fatalf("credential with the token: %d %s", code, out)
	}
	if len(cred["node_key"]) != 0 {
		t.Fatal("a private key came back for a guest that sent its public key")
	}
	crt2, _, err := cert.UnmarshalCertificateFromPEM(cred["node_crt"])
	if err != nil || !bytes.Equal(crt2.PublicKey(), guest.PublicKey().Bytes()) {
		t.Fatalf("the certificate is not for the guest's key: %v", err)
	}

	// The attestation replayed in a new session: that session's challenge
	// is another nonce.
	replay := newKBSClient(t, h.srv.URL)
	replay.auth("sealmesh-simulated")
	if code, out := replay.do("POST", "/kbs/v0/attest", c.attest); code != http.StatusUnauthorized || !strings.Contains(string(out), "NonceMismatch") {
		t.Fatalf("a replayed attestation: %d %s", code, out)
	}
	if code, _, _ := replay.credential(url.Values{}); code != http.StatusUnauthorized {
		t.Fatalf("a credential for the replaying session: %d", code)
	}
	if !slices.ContainsFunc(h.c.Status().Hosts, func(x api.Host) bool { return x.Name == crt2.Name() }) {
		t.Errorf("the KBS credential is not a lease the coordinator knows")
	}
}
