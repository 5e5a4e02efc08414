// Package attested connects to a coordinator over attested TLS, accepting it only
// if its evidence matches the expected coordinator policy.
package attested

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/ca/api"
	"github.com/sealmesh/sealmesh/ca/manifest"
)

// Client returns a client for the coordinator at url. An https URL requires a
// policy file (JSON or YAML, a manifest attestation block such as
// {"snp": {"measurements": [...]}}): the coordinator must attest to it on every
// connection. An http URL is plain and unauthenticated, for development only.
func Client(url, policyFile string) (*api.Client, error) {
	switch {
	case strings.HasPrefix(url, "http://"):
		if policyFile != "" {
			return nil, fmt.Errorf("coordinator %s: a policy needs an https URL (attested TLS)", url)
		}
		return api.NewClient(url), nil
	case !strings.HasPrefix(url, "https://"):
		return nil, fmt.Errorf("coordinator %q: want an https:// (attested) or http:// URL", url)
	case policyFile == "":
		return nil, fmt.Errorf("coordinator %s: attested TLS needs --coordinator-policy (what the coordinator must attest as)", url)
	}
	p, err := LoadPolicy(policyFile)
	if err != nil {
		return nil, err
	}
	return api.NewClient(url, atls.Transport(func(c *attest.Claims) error { return c.Satisfies(p) })), nil
}

// LoadPolicy reads a coordinator policy file strictly.
func LoadPolicy(path string) (manifest.Attestation, error) {
	var p manifest.Attestation
	b, err := os.ReadFile(path)
	if err != nil {
		return p, err
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return p, fmt.Errorf("coordinator policy %s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
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
