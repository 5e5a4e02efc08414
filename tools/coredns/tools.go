//go:build tools

// Module coredns pins the cluster DNS of make e2e-k8s, built from its Go
// module; its dependencies stay out of sealmesh's go.mod.
package tools

import _ "github.com/coredns/coredns"
