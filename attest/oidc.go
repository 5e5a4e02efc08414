package attest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// TokenGroup is added to every certificate issued on a service-account token, so
// firewall rules can tell the weaker proof apart.
const TokenGroup = "attested-by-token"

// Cluster is what verifying Kubernetes service-account tokens needs from the
// cluster that issued them: its signing keys and whether a pod still exists.
type Cluster interface {
	// JWKS returns the issuer's key set (the API server's /openid/v1/jwks).
	JWKS(ctx context.Context) ([]byte, error)
	// PodUID returns the UID of the pod, or an error if it does not exist.
	PodUID(ctx context.Context, namespace, name string) (string, error)
}

// TokenVerifier checks Kubernetes service-account tokens (platform "oidc").
type TokenVerifier struct {
	cluster Cluster
	keys    oidc.KeySet
	// Now is the clock tokens are checked against (time.Now if nil).
	Now func() time.Time
}

// NewTokenVerifier reads the cluster's key set once; restart (or a later
// refresh) picks up rotated keys.
func NewTokenVerifier(ctx context.Context, c Cluster) (*TokenVerifier, error) {
	raw, err := c.JWKS(ctx)
	if err != nil {
		return nil, fmt.Errorf("attest: service-account key set: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("attest: service-account key set: %w", err)
	}
	ks := &oidc.StaticKeySet{}
	for _, k := range set.Keys {
		ks.PublicKeys = append(ks.PublicKeys, k.Key)
	}
	if len(ks.PublicKeys) == 0 {
		return nil, errors.New("attest: the cluster's key set is empty")
	}
	return &TokenVerifier{cluster: c, keys: ks}, nil
}

// k8sClaims are the Kubernetes part of a service-account token.
type k8sClaims struct {
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
		} `json:"serviceaccount"`
		Pod *struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"pod"`
	} `json:"kubernetes.io"`
}

// Verify checks the token's signature and lifetime, that it is bound to a pod,
// and that the pod still exists with that UID (an off-line check alone would
// accept tokens of deleted pods until they expire). A token cannot commit to the
// enrolment's nonce or key: that is what makes it the weaker proof.
func (v *TokenVerifier) Verify(ctx context.Context, token []byte) (*Claims, error) {
	// Issuer and audience are the role's to check (Satisfies); the signature
	// and expiry are checked here.
	clock := v.Now
	if clock == nil {
		clock = time.Now
	}
	idt, err := oidc.NewVerifier("", v.keys, &oidc.Config{SkipClientIDCheck: true, SkipIssuerCheck: true, Now: clock}).Verify(ctx, string(token))
	if err != nil {
		return nil, fmt.Errorf("attest: service-account token: %w", err)
	}
	var k k8sClaims
	if err := idt.Claims(&k); err != nil {
		return nil, fmt.Errorf("attest: service-account token claims: %w", err)
	}
	kc := k.Kubernetes
	if kc.Namespace == "" || kc.ServiceAccount.Name == "" {
		return nil, errors.New("attest: not a Kubernetes service-account token")
	}
	if kc.Pod == nil || kc.Pod.UID == "" {
		return nil, errors.New("attest: the service-account token is not bound to a pod: use a projected token")
	}
	uid, err := v.cluster.PodUID(ctx, kc.Namespace, kc.Pod.Name)
	if err != nil {
		return nil, fmt.Errorf("attest: pod %s/%s of the token: %w", kc.Namespace, kc.Pod.Name, err)
	}
	if uid != kc.Pod.UID {
		return nil, fmt.Errorf("attest: pod %s/%s was replaced (UID %s, the token's %s)", kc.Namespace, kc.Pod.Name, uid, kc.Pod.UID)
	}
	return &Claims{
		Platform: PlatformOIDC, Issuer: idt.Issuer, Audience: idt.Audience,
		Namespace: kc.Namespace, ServiceAccount: kc.ServiceAccount.Name, Pod: kc.Pod.Name, PodUID: kc.Pod.UID,
	}, nil
}

func (c *Claims) satisfiesOIDC(p *OIDCPolicy) error {
	switch {
	case p == nil:
		return fmt.Errorf("platform %q is not accepted by this role", c.Platform)
	case c.Issuer != p.Issuer:
		return fmt.Errorf("token issuer %q is not the role's %q", c.Issuer, p.Issuer)
	case !slices.Contains(c.Audience, p.Audience):
		return fmt.Errorf("token audience %s does not include the role's %q", strings.Join(c.Audience, ","), p.Audience)
	case len(p.Namespaces) > 0 && !slices.Contains(p.Namespaces, c.Namespace):
		return fmt.Errorf("namespace %q is not one of the role's", c.Namespace)
	case len(p.ServiceAccounts) > 0 && !slices.Contains(p.ServiceAccounts, c.ServiceAccount):
		return fmt.Errorf("service account %q is not one of the role's", c.ServiceAccount)
	}
	return nil
}

// TokenFile is the issuer for pods that prove themselves with a projected
// service-account token: it reads the file on every enrolment, since the kubelet
// rotates it.
type TokenFile string

// Platform implements Issuer.
func (TokenFile) Platform() string { return PlatformOIDC }

// Evidence implements Issuer. The token cannot commit to reportData.
func (f TokenFile) Evidence([64]byte) (Evidence, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return Evidence{}, fmt.Errorf("attest: service-account token: %w", err)
	}
	return Evidence{Platform: PlatformOIDC, Data: bytes.TrimSpace(b)}, nil
}
