// Package buildmetric is the sealmesh_build_info metric every sealmesh daemon
// serves (apart from package buildinfo, which the CNI plugin links without
// Prometheus).
package buildmetric

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealmesh/sealmesh/internal/buildinfo"
)

// Collector is the sealmesh_build_info gauge (always 1, the information in
// its labels), as Prometheus's own build_info metrics are.
func Collector(component, version string) prometheus.Collector {
	in := buildinfo.Get(version)
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sealmesh_build_info",
		Help: "A sealmesh binary's build: version, commit, Go and Nebula versions (value 1).",
		ConstLabels: prometheus.Labels{"component": component, "version": in.Version, "commit": in.Commit,
			"goversion": in.Go, "nebula_version": in.Nebula},
	})
	g.Set(1)
	return g
}
