package attest

import (
	"fmt"
	"slices"
	"strings"
)

// Policy is what a verifying side accepts. The platform comes from the other
// side's own JSON, so a client whose policy names only SNP must not parse TDX
// at all: Platform is asked first, and evidence of any other platform is
// refused with its bytes unread.
type Policy interface {
	// Platform reports whether evidence of platform could be accepted.
	Platform(platform string) bool
	// Accept checks claims that verified.
	Accept(*Claims) error
}

// Accept is a Policy made of a platform list and a check of the claims.
type Accept struct {
	Platforms []string
	Claims    func(*Claims) error
}

// Platform reports whether platform is in the list.
func (a Accept) Platform(platform string) bool { return slices.Contains(a.Platforms, platform) }

// Accept runs the check.
func (a Accept) Accept(c *Claims) error { return a.Claims(c) }

// Satisfying is the Policy of one attestation block (a coordinator policy file,
// a manifest role): claims must satisfy it.
func Satisfying(p Attestation) Policy {
	return Accept{Platforms: p.Platforms(), Claims: func(c *Claims) error { return c.Satisfies(p) }}
}

// Refuse returns the error for evidence of a platform the policy does not name.
func Refuse(platform string, accepted []string) error {
	return fmt.Errorf("attest: evidence of platform %q, which this policy does not accept (it accepts %s); refused unparsed", platform, strings.Join(accepted, ", "))
}

// recovered turns a panic in a TEE library's parser or verifier into an
// error: the bytes come from whoever is on the other side, and a client that
// verifies a server in net/http's dial goroutine has nothing else above it
// that would recover.
func recovered(platform string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("attest: %s evidence made the verifier fail (%v); refused", platform, r)
	}
}
