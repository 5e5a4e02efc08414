package meshctl

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/jointoken"
)

// TestTokenLifecycle drives meshctl token against a coordinator: a token
// admits its role; rotated, the old one is refused and the new one works
// while the lighthouse the old one admitted keeps renewing by certificate;
// a lighthouse enrolled again with a new key supersedes the old key's
// certificate; a revoked token is refused; a single-use token admits one
// key (again, after a lost answer) and refuses a second; the secrets are in
// no store record and no listing.
func TestTokenLifecycle(t *testing.T) {
	ctx := context.Background()
	o := newOwnerMesh(t)
	m, url, dir, keyFile, run := o.verifyMesh, o.url, o.dir, o.keyFile, o.must
	c := api.NewClient(url)
	readToken := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jointoken.Parse(string(b))
		if err != nil {
			t.Fatal(err)
		}
		if tok.MeshID != m.c.MeshID() {
			t.Fatalf("token names mesh %s, the coordinator serves %s", tok.MeshID, m.c.MeshID())
		}
		return tok.String()
	}
	var secrets []string

	lhFile := filepath.Join(dir, "lh.token")
	run("token", "create", "--role", "lighthouse", "--name", "lh", "--owner-key", keyFile, "--out", lhFile)
	lhToken := readToken(lhFile)
	secrets = append(secrets, secretOf(lhToken))
	first, err := enrol.Join(ctx, c, lhToken)
	if err != nil {
		t.Fatal(err)
	}
	if first.Name != "lh" || first.IP != "10.42.0.1/24" {
		t.Fatalf("the lighthouse token gave %s %s, want lh 10.42.0.1/24", first.Name, first.IP)
	}
	firstKey, err := enrol.InMemory(first.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}

	// Rotated: the old token is refused, the running lighthouse renews.
	id := tokenID(t, lhToken)
	run("token", "rotate", id, "--owner-key", keyFile, "--out", lhFile)
	newToken := readToken(lhFile)
	secrets = append(secrets, secretOf(newToken))
	if _, err := enrol.Join(ctx, c, lhToken); !errors.Is(err, api.ErrRefused) || !strings.Contains(err.Error(), "not one of manifest") {
		t.Fatalf("the rotated-away token: %v, want refused", err)
	}
	renewed, err := enrol.RenewCertificate(ctx, c, first.Certificate, firstKey)
	if err != nil {
		t.Fatalf("the lighthouse's renewal after rotation: %v", err)
	}
	if renewed.Name != "lh" || renewed.IP != first.IP {
		t.Fatalf("renewal gave %s %s", renewed.Name, renewed.IP)
	}
	// A renewal is no join: a token is not needed, and it is refused
	// for a certificate of a key that is not the requester's.
	other, _, _ := enrol.KeyPair()
	otherKey, _ := enrol.InMemory(other)
	if _, err := enrol.RenewCertificate(ctx, c, renewed.Certificate, otherKey); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("renewing another key's certificate: %v, want refused", err)
	}

	// The new token with a new key: the old key's certificates are
	// superseded (blocklisted, and renew no more).
	second, err := enrol.Join(ctx, c, newToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{first.Certificate, renewed.Certificate} {
		if fp := fingerprintOf(t, e); !slices.Contains(second.Blocklist, fp) {
			t.Errorf("certificate %s of the superseded key is not in the new enrolment's blocklist %v", fp[:12], second.Blocklist)
		}
	}
	if _, err := enrol.RenewCertificate(ctx, c, renewed.Certificate, firstKey); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("the superseded key renewed: %v", err)
	}

	// Revoked: refused for new hosts; the lighthouse it admitted renews.
	run("token", "revoke", tokenID(t, newToken), "--owner-key", keyFile)
	if _, err := enrol.Join(ctx, c, newToken); !errors.Is(err, api.ErrRefused) {
		t.Fatalf("a revoked token: %v, want refused", err)
	}
	secondKey, _ := enrol.InMemory(second.PrivateKey)
	if _, err := enrol.RenewCertificate(ctx, c, second.Certificate, secondKey); err != nil {
		t.Fatalf("renewal after the token's revocation: %v", err)
	}

	// Single use: one key, and that key again; no second key.
	vmFile := filepath.Join(dir, "vm.token")
	run("token", "create", "--role", "vm", "--uses", "1", "--owner-key", keyFile, "--out", vmFile)
	vmToken := readToken(vmFile)
	secrets = append(secrets, secretOf(vmToken))
	_, pubA, _ := enrol.KeyPair()
	a, err := enrol.JoinPublic(ctx, c, vmToken, pubA)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(a.Groups, "joined-by-token") || !slices.Contains(a.Groups, "vms") || a.Role != "vm" {
		t.Fatalf("a vm token gave role %s groups %v", a.Role, a.Groups)
	}
	again, err := enrol.JoinPublic(ctx, c, vmToken, pubA)
	if err != nil {
		t.Fatalf("the same key again on a single-use token: %v", err)
	}
	if again.IP != a.IP {
		t.Fatalf("the same key again got %s, first %s", again.IP, a.IP)
	}
	_, pubB, _ := enrol.KeyPair()
	if _, err := enrol.JoinPublic(ctx, c, vmToken, pubB); !errors.Is(err, api.ErrRefused) || !strings.Contains(err.Error(), "used up") {
		t.Fatalf("a second key on a single-use token: %v, want refused as used up", err)
	}

	// Listed by ID, never by secret; the store holds no secret either.
	var rows []TokenRow
	if err := json.Unmarshal([]byte(run("token", "list", "-o", "json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Role != "lighthouse" || rows[1].Role != "vm" || rows[1].Uses != 1 {
		t.Fatalf("token list = %+v, want the first manifest's lighthouse token and the vm token (the other was rotated, then revoked)", rows)
	}
	listing := run("token", "list")
	recs, err := m.st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(listing, s) {
			t.Errorf("token list shows a secret")
		}
		for k, v := range recs {
			if strings.Contains(string(v), s) {
				t.Errorf("store record %s holds a token's secret", k)
			}
		}
	}
}

// ownerMesh is a verifyMesh served over HTTP, its owner key in a file, and
// meshctl pointed at it.
type ownerMesh struct {
	*verifyMesh
	url, dir, keyFile string
	t                 *testing.T
}

func newOwnerMesh(t *testing.T) *ownerMesh {
	t.Helper()
	m := newVerifyMesh(t)
	o := &ownerMesh{verifyMesh: m, url: m.serve(t, nil), dir: t.TempDir(), t: t}
	o.keyFile = filepath.Join(o.dir, "owner.key")
	if err := os.WriteFile(o.keyFile, m.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return o
}

// run runs meshctl against the mesh.
func (o *ownerMesh) run(args ...string) (string, error) {
	return meshctl(append([]string{"--coordinator", o.url}, args...)...)
}

// must runs meshctl against the mesh and fails the test if it fails.
func (o *ownerMesh) must(args ...string) string {
	o.t.Helper()
	out, err := o.run(args...)
	if err != nil {
		o.t.Fatalf("meshctl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func tokenID(t *testing.T, token string) string {
	t.Helper()
	tok, err := jointoken.Parse(token)
	if err != nil {
		t.Fatal(err)
	}
	return jointoken.IDOf(tok.Hash())
}

func secretOf(token string) string { return token[strings.LastIndex(token, "-")+1:] }

func fingerprintOf(t *testing.T, pemCert string) string {
	t.Helper()
	c, _, err := cert.UnmarshalCertificateFromPEM([]byte(pemCert))
	if err != nil {
		t.Fatal(err)
	}
	fp, err := c.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	return fp
}
