// Package gopacket is empty: sealmesh's builds replace the gopacket module
// with this directory for the few constants Nebula takes from its layers
// package (see layers). It exists so that `go mod tidy` can resolve the
// imports of Nebula's own tests, which sealmesh never builds.
package gopacket
