//go:build tools

// Module nebula pins stock nebula-cert v1.11.1, the version sealmesh links,
// for tests that check what sealmesh writes against Nebula's own tool.
package tools

import _ "github.com/slackhq/nebula/cmd/nebula-cert"
