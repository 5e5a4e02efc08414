// Package attested connects to a coordinator over attested TLS, accepting it only
// if its evidence matches the expected coordinator policy.
package attested

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"

	"sigs.k8s.io/yaml"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/internal/strictjson"
	"github.com/sealmesh/sealmesh/manifest"
)

// Client returns a client for the coordinator at url. An https URL requires a
// policy file (JSON or YAML, a manifest attestation block such as
// {"snp": {"measurements": [...]}}): the coordinator must attest to it on every
// connection. An http URL is plain and unauthenticated, for development only.
// The Trust it returns can follow the mesh's manifest afterwards (Refresh).
func Client(url, policyFile string) (*api.Client, *Trust, error) {
	switch {
	case strings.HasPrefix(url, "http://"):
		if policyFile != "" {
			return nil, nil, fmt.Errorf("coordinator %s: a policy needs an https URL (attested TLS)", url)
		}
		return api.NewClient(url), nil, nil
	case !strings.HasPrefix(url, "https://"):
		return nil, nil, fmt.Errorf("coordinator %q: want an https:// (attested) or http:// URL", url)
	case policyFile == "":
		return nil, nil, fmt.Errorf("coordinator %s: attested TLS needs --coordinator-policy-file (what the coordinator must attest as)", url)
	}
	p, err := LoadPolicy(policyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--coordinator-policy-file: %w", err)
	}
	t := &Trust{initial: p}
	pool := atls.NewPool(t, nil, nil)
	t.changed = pool.Reset
	return api.NewClient(url, pool), t, nil
}

// Trust decides which coordinators a client accepts: those its configured
// policy accepts and, once it has read the manifest from an attested
// coordinator, that also satisfy one of the manifest's coordinator roles.
// The manifest only narrows the policy, never widens it: a manifest change
// that removes a coordinator image takes effect at once (the client's
// connections are retired and its next request makes a handshake checked
// against the new roles), but one that adds an image, or a simulated
// coordinator, is not trusted until the data owner puts it in the client's
// policy. Before, the manifest's roles replaced the policy, so whoever could
// get a manifest applied widened every client's trust.
type Trust struct {
	mu      sync.Mutex
	initial attest.Attestation
	roles   []manifest.CoordinatorRole
	head    string
	// changed retires the connections made under the old roles.
	changed func()
}

// Platform reports whether a coordinator could attest with platform: the
// configured policy's platforms (which the manifest's roles may narrow).
// Evidence of any other platform is refused unparsed.
func (t *Trust) Platform(platform string) bool {
	t.mu.Lock()
	roles, initial := t.roles, t.initial
	t.mu.Unlock()
	if !slices.Contains(initial.Platforms(), platform) {
		return false
	}
	return len(roles) == 0 || slices.ContainsFunc(roles, func(r manifest.CoordinatorRole) bool {
		return slices.Contains(r.Attestation.Platforms(), platform)
	})
}

// Accept reports whether claims are those of a coordinator to trust.
func (t *Trust) Accept(c *attest.Claims) error {
	t.mu.Lock()
	roles, initial := t.roles, t.initial
	t.mu.Unlock()
	if err := c.Satisfies(initial); err != nil {
		return fmt.Errorf("not a coordinator the configured policy accepts (--coordinator-policy-file): %w", err)
	}
	if len(roles) == 0 {
		return nil
	}
	if _, err := attest.Match(c, roles, nil); err != nil {
		return fmt.Errorf("matches no coordinator role of the manifest (%v)", err)
	}
	return nil
}

// Refresh reads the current manifest through c (whose coordinator this Trust
// has just accepted) and follows it.
func (t *Trust) Refresh(ctx context.Context, c *api.Client) error {
	info, err := c.Manifest(ctx)
	if err != nil {
		return err
	}
	return t.Follow(info)
}

// Follow takes the coordinator roles of a manifest a coordinator this Trust
// accepted sent (follow.Follower calls it with every manifest it reads).
func (t *Trust) Follow(info *api.ManifestInfo) error {
	if t == nil {
		return nil // plain HTTP: no trust to follow
	}
	m, err := manifest.ParseJSON(info.Manifest)
	if err != nil {
		return fmt.Errorf("coordinator sent a manifest that does not parse: %w", err)
	}
	if m.Hash() != info.Hash {
		return errors.New("coordinator sent a manifest that does not match its hash")
	}
	if len(m.Coordinators) == 0 {
		return nil
	}
	t.mu.Lock()
	same := reflect.DeepEqual(t.roles, m.Coordinators)
	t.roles, t.head = m.Coordinators, info.Head
	changed := t.changed
	t.mu.Unlock()
	if !same && changed != nil {
		changed()
	}
	return nil
}

// LoadPolicy reads a coordinator policy file strictly.
func LoadPolicy(path string) (attest.Attestation, error) {
	var p attest.Attestation
	b, err := os.ReadFile(path)
	if err != nil {
		return p, err
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return p, fmt.Errorf("coordinator policy %s: %w", path, err)
	}
	if err := strictjson.Decode(js, &p); err != nil {
		return p, fmt.Errorf("coordinator policy %s: %w", path, err)
	}
	if p.Simulated == nil && p.SNP == nil && p.TDX == nil {
		return p, errors.New("coordinator policy " + path + ": name a TEE platform (snp, tdx, or simulated for development)")
	}
	if p.OIDC != nil {
		return p, errors.New("coordinator policy " + path + ": a coordinator must attest with a TEE, not a token")
	}
	return p, nil
}
