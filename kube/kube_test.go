package kube_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/kube"
	"github.com/sealmesh/sealmesh/test/tools"
)

const issuer = "https://kubernetes.default.svc.cluster.local"

// TestServiceAccountTokens verifies tokens minted by a real kube-apiserver
// (TokenRequest, bound to a pod) with the key set read from that API server, and
// refuses each way a token can be wrong.
func TestServiceAccountTokens(t *testing.T) {
	ctx := context.Background()
	cfg := tools.StartKubeAPIServer(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tools.CreateNamespace(t, cfg, "shop")
	for _, sa := range []string{"web", "db"} {
		if _, err := cs.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod, err := cs.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0"},
		Spec:       corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/none"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := func(audience string, bound bool) []byte {
		t.Helper()
		exp := int64(600)
		req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &exp}}
		if bound {
			req.Spec.BoundObjectRef = &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
		}
		r, err := cs.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "web", req, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return []byte(r.Status.Token)
	}

	cluster, err := kube.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.NewTokenVerifier(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	policy := func(f func(*attest.OIDCPolicy)) attest.Attestation {
		p := &attest.OIDCPolicy{Issuer: issuer, Audience: "sealmesh", Namespaces: []string{"shop"}, ServiceAccounts: []string{"web"}}
		if f != nil {
			f(p)
		}
		return attest.Attestation{OIDC: p}
	}
	good := token("sealmesh", true)

	tests := []struct {
		name       string
		token      []byte
		policy     attest.Attestation
		clock      func() time.Time
		wantVerify string
		wantPolicy string
	}{
		{name: "pod-bound token of the role's service account", token: good, policy: policy(nil)},
		{name: "wrong audience", token: token("other", true), policy: policy(nil), wantPolicy: "audience"},
		{name: "wrong service account", token: good, policy: policy(func(p *attest.OIDCPolicy) { p.ServiceAccounts = []string{"db"} }), wantPolicy: "service account"},
		{name: "wrong namespace", token: good, policy: policy(func(p *attest.OIDCPolicy) { p.Namespaces = []string{"prod"} }), wantPolicy: "namespace"},
		{name: "wrong issuer", token: good, policy: policy(func(p *attest.OIDCPolicy) { p.Issuer = "https://other.example" }), wantPolicy: "issuer"},
		{name: "expired", token: good, policy: policy(nil), clock: func() time.Time { return time.Now().Add(time.Hour) }, wantVerify: "expired"},
		{name: "not bound to a pod", token: token("sealmesh", false), policy: policy(nil), wantVerify: "not bound to a pod"},
		{name: "forged with another key", token: forge(t, good), policy: policy(nil), wantVerify: "signature"},
		{name: "a TEE-only role", token: good, policy: attest.Attestation{SNP: &attest.SNPPolicy{Measurements: []string{strings.Repeat("0", 96)}}}, wantPolicy: `platform "oidc" is not accepted`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v.Now = tt.clock
			defer func() { v.Now = nil }()
			c, err := v.Verify(ctx, tt.token)
			if !matches(err, tt.wantVerify) {
				t.Fatalf("Verify error = %v, want %q", err, tt.wantVerify)
			}
			if err != nil {
				return
			}
			if c.Namespace != "shop" || c.ServiceAccount != "web" || c.Pod != "web-0" || c.PodUID != string(pod.UID) {
				t.Fatalf("claims %+v", c)
			}
			if err := c.Satisfies(tt.policy); !matches(err, tt.wantPolicy) {
				t.Fatalf("Satisfies error = %v, want %q", err, tt.wantPolicy)
			}
		})
	}

	t.Run("enrolment on a token", func(t *testing.T) { enrolOnToken(t, v, good) })

	t.Run("key set from a file", func(t *testing.T) {
		jwks, err := cluster.JWKS(ctx)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "jwks.json")
		os.WriteFile(f, jwks, 0o600)
		fromFile, _ := kube.New(cfg)
		fromFile.JWKSFile = f
		vf, err := attest.NewTokenVerifier(ctx, fromFile)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vf.Verify(ctx, good); err != nil {
			t.Fatalf("token with the key set from a file: %v", err)
		}
		os.WriteFile(f, []byte(`{"keys": []}`), 0o600)
		if _, err := attest.NewTokenVerifier(ctx, fromFile); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Fatalf("an empty key set file: %v", err)
		}
	})

	// The pod is deleted: its unexpired token is no longer good.
	if err := cs.CoreV1().Pods("shop").Delete(ctx, "web-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := v.Verify(ctx, good)
		if err != nil && strings.Contains(err.Error(), "not found") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token of a deleted pod: %v, want refused", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// forge re-signs the token's claims with a key the cluster never had.
func forge(t *testing.T, token []byte) []byte {
	parts := strings.Split(string(token), ".")
	payload, err := jose.ParseSigned(string(token), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(parts) != 3 {
		t.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	json.Unmarshal(payload.UnsafePayloadWithoutVerification(), &claims)
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := obj.CompactSerialize()
	return []byte(out)
}

func matches(err error, want string) bool {
	if want == "" {
		return err == nil
	}
	return err != nil && strings.Contains(err.Error(), want)
}

// enrolOnToken enrols through a coordinator with a token: the certificate carries
// the role's groups and the group that marks the weaker proof.
func enrolOnToken(t *testing.T, v *attest.TokenVerifier, token []byte) {
	ctx := context.Background()
	key, _, pub, err := owner.NewOwnerKey()
	if err != nil {
		t.Fatal(err)
	}
	st, _ := store.OpenFile(t.TempDir())
	c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st,
		StateDir: t.TempDir(), Verifier: &attest.Verifier{Tokens: v}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	client := api.NewClient(srv.URL)
	raw := fmt.Sprintf(`{"version": 1, "owners": [{"name": "o", "key": %q}], "networks": ["10.42.0.0/24"],
 "roles": [{"name": "web", "groups": ["web"], "attestation": {"oidc": {"issuer": %q, "audience": "sealmesh", "namespaces": ["shop"]}}}],
 "lighthouses": [{"name": "lh", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh", "sha256": %q}],
 "firewall": [{"from": ["attested-by-token"], "to": "web", "proto": "icmp", "port": "any"}]}`, pub, issuer, strings.Repeat("a", 64))
	req, err := owner.Request([]byte(raw), "", key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.SetManifest(ctx, req); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "token")
	os.WriteFile(f, token, 0o600)
	e, err := enrol.Workload(ctx, client, attest.TokenFile(f), api.Workload{Namespace: "shop", Name: "web-0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(e.Groups); got != "[web attested-by-token]" {
		t.Fatalf("groups = %s, want the role's and attested-by-token", got)
	}
	if len(e.Inbound) != 1 || e.Inbound[0].Group != "attested-by-token" {
		t.Fatalf("inbound = %+v", e.Inbound)
	}
}
