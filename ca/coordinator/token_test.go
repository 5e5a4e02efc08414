package coordinator_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/coordinator"
)

// tokenCluster is a Kubernetes token issuer: its key signs service-account
// tokens, and every pod it names exists with the UID its tokens carry. The
// verification under test is attest's own, with go-oidc.
type tokenCluster struct{ key *rsa.PrivateKey }

func (c tokenCluster) JWKS(context.Context) ([]byte, error) {
	return json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &c.key.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"}}})
}

func (tokenCluster) PodUID(_ context.Context, ns, name string) (string, error) {
	return "uid-" + ns + "-" + name, nil
}

// token writes a projected service-account token for pod ns/name to a file.
func (c tokenCluster) token(t *testing.T, ns, sa, name string) attest.TokenFile {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: c.key, KeyID: "k"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	k8s := map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": sa, "uid": "sa"},
		"pod": map[string]any{"name": name, "uid": "uid-" + ns + "-" + name}}
	raw, err := jwt.Signed(sig).Claims(jwt.Claims{Issuer: "https://kubernetes.default.svc", Audience: jwt.Audience{"sealmesh"},
		Subject: fmt.Sprintf("system:serviceaccount:%s:%s", ns, sa), IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).
		Claims(map[string]any{"kubernetes.io": k8s}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	return attest.TokenFile(f)
}

// TestTokenRoleFromToken: a token enrolment's role is chosen by the token's
// namespace and service account, not by the workload the request claims.
// Before, a dev token claiming prod/db-0 got the prod role.
func TestTokenRoleFromToken(t *testing.T) {
	ctx := context.Background()
	key, _ := rsa.GenerateKey(rand.Reader, 2048) // as the API server signs
	kc := tokenCluster{key}
	tv, err := attest.NewTokenVerifier(ctx, kc)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, newDirs(t), nil, func(c *coordinator.Config) { c.Verifier = &attest.Verifier{Tokens: tv} })
	oidc := `"attestation": {"oidc": {"issuer": "https://kubernetes.default.svc", "audience": "sealmesh"}}`
	h.create(t, strings.Replace(testManifest(webDev.RootFingerprint()),
		`{"name": "hw", "groups": ["hw"], "attestation": {"snp": {"measurements": [`,
		`{"name": "prod", "groups": ["prod"], "podSelector": {"namespaces": ["prod"]}, `+oidc+`},
    {"name": "dev", "groups": ["dev"], "podSelector": {"namespaces": ["dev"]}, `+oidc+`},
    {"name": "hw", "groups": ["hw"], "attestation": {"snp": {"measurements": [`, 1))

	devToken := kc.token(t, "dev", "default", "dev-0")
	tests := []struct {
		name     string
		token    attest.TokenFile
		claim    api.Workload
		wantRole string
		wantErr  string
	}{
		{"the token's own pod", devToken, api.Workload{Namespace: "dev", Name: "dev-0"}, "dev", ""},
		{"nothing claimed: the token's pod", devToken, api.Workload{}, "dev", ""},
		{"a dev token claiming prod/db-0", devToken, api.Workload{Namespace: "prod", Name: "db-0", ServiceAccount: "default"}, "", `claims namespace "prod"`},
		{"a dev token claiming another dev pod", devToken, api.Workload{Namespace: "dev", Name: "dev-1"}, "", `claims pod "dev-1"`},
		{"a prod token", kc.token(t, "prod", "db", "db-0"), api.Workload{Namespace: "prod", Name: "db-0", ServiceAccount: "db"}, "prod", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := enrol.Workload(ctx, h.client, tt.token, tt.claim)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Role != tt.wantRole {
				t.Fatalf("role %s, want %s", e.Role, tt.wantRole)
			}
		})
	}
}
