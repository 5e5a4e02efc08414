//go:build tools

// Module helm pins the helm CLI that renders and installs deploy/helm/sealmesh
// (make manifests, make e2e-k8s), built from its Go module; its dependencies
// stay out of sealmesh's go.mod.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
