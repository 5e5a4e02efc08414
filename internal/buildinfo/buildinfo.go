// Package buildinfo says what a sealmesh binary is built from: its version
// (set with -ldflags -X main.version), the commit, Go's and Nebula's versions,
// for `version` output, /v1/status and the sealmesh_build_info metric. It
// links nothing but the runtime: the CNI plugin reports its version too.
package buildinfo

import (
	"runtime"
	"runtime/debug"
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
