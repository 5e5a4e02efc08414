// Package tee opens the evidence source a binary's --tee flag names.
package tee

import (
	"fmt"
	"strings"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/attest/snpguest"
	"github.com/sealmesh/sealmesh/attest/tdxguest"
)

// Open returns the issuer spec names: "snp" or "tdx" inside such a guest,
// "simulated:<dir>" for development, and, only where allowToken is set (workloads;
// never a coordinator), "oidc:<projected token file>".
func Open(spec string, allowToken bool) (attest.Issuer, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case kind == "simulated":
		return simulated.Load(arg)
	case kind == "snp":
		return snpguest.Open()
	case kind == "tdx":
		return tdxguest.Open()
	case kind == "oidc" && allowToken:
		return attest.TokenFile(arg), nil
	}
	want := "snp, tdx, or simulated:<dir> (development)"
	if allowToken {
		want = "snp, tdx, oidc:<projected service-account token file>, or simulated:<dir> (development)"
	}
	return nil, fmt.Errorf("--tee %q: want %s", spec, want)
}
