package manifest

import (
	"fmt"

	yaml "go.yaml.in/yaml/v3"
)

// YAML is the manifest as an owner writes it: block-style YAML, fields in
// the order of the canonical encoding (version, owners, networks, roles, ...)
// rather than sorted. Parse reads it back to the same manifest and hash.
func (m *Manifest) YAML() ([]byte, error) {
	// JSON is YAML in flow style; decoding it into nodes keeps the order.
	var doc yaml.Node
	if err := yaml.Unmarshal(m.Canonical(), &doc); err != nil {
		return nil, fmt.Errorf("manifest: yaml: %w", err)
	}
	block(&doc)
	return yaml.Marshal(&doc)
}

// block turns flow style into block style and lets the encoder choose
// quoting (it still quotes a string that would read back as another type).
func block(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		block(c)
	}
}
