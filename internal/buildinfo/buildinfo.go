// Package buildinfo says what a sealmesh binary is built from: its version
// (set with -ldflags -X main.version), the commit, Go's and Nebula's versions,
// for `version` output, /v1/status and the sealmesh_build_info metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Info describes one binary.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Go      string `json:"go"`
	Nebula  string `json:"nebula,omitempty"`
}

// Get returns the build information of this binary, whose main package
// says its version.
func Get(version string) Info {
	in := Info{Version: version, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				in.Commit = s.Value
			}
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/slackhq/nebula" {
				in.Nebula = d.Version
			}
		}
	}
	return in
}

// Collector is the sealmesh_build_info gauge (always 1, the information in
// its labels), as Prometheus's own build_info metrics are.
func Collector(component, version string) prometheus.Collector {
	in := Get(version)
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sealmesh_build_info",
		Help: "A sealmesh binary's build: version, commit, Go and Nebula versions (value 1).",
		ConstLabels: prometheus.Labels{"component": component, "version": in.Version, "commit": in.Commit,
			"goversion": in.Go, "nebula_version": in.Nebula},
	})
	g.Set(1)
	return g
}
