//go:build tools

// Module promtool pins Prometheus's promtool, which the tests use to check
// the chart's alerting rules (test/e2e), built from its Go module; its
// dependencies stay out of sealmesh's go.mod.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
