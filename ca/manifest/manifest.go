// Package manifest defines what a mesh is allowed to contain: its overlay network,
// the roles a workload can attest into (with the Nebula groups each role gets), the
// lighthouses, and the firewall between groups. The coordinator assigns identity only
// from a manifest; nothing a requester sends can add to it (invariant C).
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Platform names as they appear under a role's attestation policy.
const (
	PlatformSimulated = "simulated"
	PlatformSNP       = "snp"
)

// DefaultCertificateLifetime applies when the manifest names none.
const DefaultCertificateLifetime = 24 * time.Hour

// Manifest is the workload owner's statement of the mesh.
type Manifest struct {
	// Network is the overlay prefix certificates are allocated from.
	Network string `json:"network"`
	// CertificateLifetime bounds every host certificate, e.g. "24h".
	CertificateLifetime string       `json:"certificateLifetime,omitempty"`
	Roles               []Role       `json:"roles"`
	Lighthouses         []Lighthouse `json:"lighthouses"`
	Firewall            []Rule       `json:"firewall,omitempty"`
}

// Role is a kind of workload: the evidence that proves it and the groups it gets.
type Role struct {
	Name        string      `json:"name"`
	Groups      []string    `json:"groups"`
	Attestation Attestation `json:"attestation"`
}

// Attestation holds one policy per platform a role accepts. A platform without a
// policy is refused for that role: in particular simulated evidence is accepted only
// where the manifest names `simulated`.
type Attestation struct {
	Simulated *SNPPolicy `json:"simulated,omitempty"`
	SNP       *SNPPolicy `json:"snp,omitempty"`
}

// SNPPolicy is what an SEV-SNP report (real or simulated) must show.
type SNPPolicy struct {
	// Measurements lists acceptable launch measurements, 96 hex characters each.
	Measurements []string `json:"measurements"`
	// RootFingerprint pins the root (ARK) certificate by its SHA-256, 64 hex
	// characters. Required for `simulated`, whose root is a development key pair;
	// for real SNP the AMD roots shipped with go-sev-guest are used.
	RootFingerprint string `json:"rootFingerprint,omitempty"`
	// AllowDebug accepts guests launched with the debug policy bit (memory readable
	// by the host). Off by default.
	AllowDebug bool `json:"allowDebug,omitempty"`
}

// Lighthouse is a Nebula lighthouse with a fixed overlay IP, enrolled with a token.
type Lighthouse struct {
	Name      string `json:"name"`
	OverlayIP string `json:"overlayIP"`
	// Underlay is the host:port every node uses to reach it.
	Underlay string `json:"underlay"`
	// TokenSHA256 is the hex SHA-256 of the lighthouse's pre-shared enrolment token;
	// the manifest never holds the token itself.
	TokenSHA256 string `json:"tokenSHA256"`
}

// Rule allows traffic into hosts of group To from hosts of any group in From.
type Rule struct {
	From  []string `json:"from"`
	To    string   `json:"to"`
	Proto string   `json:"proto"`
	// Port is a number, a range "a-b", or "any". Ignored for icmp.
	Port string `json:"port"`
}

// Parse reads a manifest in JSON or YAML. Unknown fields are errors, so a typo does
// not silently weaken a policy.
func Parse(data []byte) (*Manifest, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("manifest: not JSON or YAML: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Canonical is the manifest's stable encoding; its hash names the manifest.
func (m *Manifest) Canonical() []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("manifest: marshal: %v", err)) // plain structs always marshal
	}
	return b
}

// Hash is the hex SHA-256 of the canonical encoding.
func (m *Manifest) Hash() string {
	sum := sha256.Sum256(m.Canonical())
	return hex.EncodeToString(sum[:])
}

// Prefix returns the parsed overlay network. Valid only after Validate.
func (m *Manifest) Prefix() netip.Prefix {
	return netip.MustParsePrefix(m.Network).Masked()
}

// Lifetime returns the certificate lifetime. Valid only after Validate.
func (m *Manifest) Lifetime() time.Duration {
	if m.CertificateLifetime == "" {
		return DefaultCertificateLifetime
	}
	d, _ := time.ParseDuration(m.CertificateLifetime)
	return d
}

// Role returns the role with the given name.
func (m *Manifest) Role(name string) (*Role, bool) {
	for i := range m.Roles {
		if m.Roles[i].Name == name {
			return &m.Roles[i], true
		}
	}
	return nil, false
}

// AcceptsSimulated reports whether any role accepts the development-only platform.
func (m *Manifest) AcceptsSimulated() bool {
	for _, r := range m.Roles {
		if r.Attestation.Simulated != nil {
			return true
		}
	}
	return false
}

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	groupRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	hexRE   = regexp.MustCompile(`^[0-9a-f]*$`)
)

// Validate checks every field and reports each problem with its path and the fix.
func (m *Manifest) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}

	prefix, err := netip.ParsePrefix(m.Network)
	switch {
	case m.Network == "":
		bad("network", "required: the overlay prefix, e.g. 10.42.0.0/16")
	case err != nil:
		bad("network", "want a prefix like 10.42.0.0/16, got %q", m.Network)
	case prefix.Addr().Is4() && prefix.Bits() > 30:
		bad("network", "prefix /%d leaves no room for hosts; use /30 or shorter", prefix.Bits())
	case prefix.Addr().Is6() && prefix.Bits() > 126:
		bad("network", "prefix /%d leaves no room for hosts; use /126 or shorter", prefix.Bits())
	}
	prefix = prefix.Masked()

	if m.CertificateLifetime != "" {
		d, err := time.ParseDuration(m.CertificateLifetime)
		if err != nil || d < time.Minute || d > 365*24*time.Hour {
			bad("certificateLifetime", "want a duration between 1m and 8760h, got %q", m.CertificateLifetime)
		}
	}

	if len(m.Roles) == 0 {
		bad("roles", "at least one role is required")
	}
	seenRole := map[string]bool{}
	groups := map[string]bool{}
	for i, r := range m.Roles {
		p := fmt.Sprintf("roles[%d]", i)
		if !nameRE.MatchString(r.Name) {
			bad(p+".name", "want a DNS label (lower case letters, digits, '-'), got %q", r.Name)
		} else if seenRole[r.Name] {
			bad(p+".name", "role %q is defined twice", r.Name)
		}
		seenRole[r.Name] = true
		for j, g := range r.Groups {
			if !groupRE.MatchString(g) {
				bad(fmt.Sprintf("%s.groups[%d]", p, j), "want letters, digits, '_', '.', '-', got %q", g)
			}
			groups[g] = true
		}
		a := r.Attestation
		if a.Simulated == nil && a.SNP == nil {
			bad(p+".attestation", "name at least one platform (simulated, snp)")
		}
		if a.Simulated != nil {
			checkSNP(bad, p+".attestation.simulated", a.Simulated, true)
		}
		if a.SNP != nil {
			checkSNP(bad, p+".attestation.snp", a.SNP, false)
		}
	}

	if len(m.Lighthouses) == 0 {
		bad("lighthouses", "at least one lighthouse is required: nodes find each other through it")
	}
	seenIP := map[netip.Addr]bool{}
	for i, l := range m.Lighthouses {
		p := fmt.Sprintf("lighthouses[%d]", i)
		if !nameRE.MatchString(l.Name) {
			bad(p+".name", "want a DNS label, got %q", l.Name)
		}
		ip, err := netip.ParseAddr(l.OverlayIP)
		switch {
		case err != nil:
			bad(p+".overlayIP", "want an IP address, got %q", l.OverlayIP)
		case prefix.IsValid() && !usable(prefix, ip):
			bad(p+".overlayIP", "%s is not a host address of network %s", ip, prefix)
		case seenIP[ip]:
			bad(p+".overlayIP", "%s is used by another lighthouse", ip)
		}
		seenIP[ip] = true
		if ap, err := netip.ParseAddrPort(l.Underlay); err != nil || ap.Port() == 0 {
			bad(p+".underlay", "want ip:port that nodes reach it on, got %q", l.Underlay)
		}
		if len(l.TokenSHA256) != 64 || !hexRE.MatchString(l.TokenSHA256) {
			bad(p+".tokenSHA256", "want 64 lower-case hex characters (sha256sum of the token), got %d", len(l.TokenSHA256))
		}
	}

	for i, r := range m.Firewall {
		p := fmt.Sprintf("firewall[%d]", i)
		if len(r.From) == 0 {
			bad(p+".from", "name at least one group, or \"any\"")
		}
		for j, g := range r.From {
			if g != "any" && !groups[g] {
				bad(fmt.Sprintf("%s.from[%d]", p, j), "group %q is given to no role", g)
			}
		}
		if !groups[r.To] {
			bad(p+".to", "group %q is given to no role", r.To)
		}
		switch r.Proto {
		case "any", "tcp", "udp", "icmp":
		default:
			bad(p+".proto", "want any, tcp, udp or icmp, got %q", r.Proto)
		}
		if r.Proto != "icmp" && !validPort(r.Port) {
			bad(p+".port", "want a port, a range like 8000-8080, or \"any\", got %q", r.Port)
		}
	}
	return errors.Join(errs...)
}

func checkSNP(bad func(string, string, ...any), p string, s *SNPPolicy, simulated bool) {
	if len(s.Measurements) == 0 {
		bad(p+".measurements", "at least one launch measurement is required")
	}
	for k, ms := range s.Measurements {
		if len(ms) != 96 || !hexRE.MatchString(ms) {
			bad(fmt.Sprintf("%s.measurements[%d]", p, k), "want 96 lower-case hex characters, got %d", len(ms))
		}
	}
	switch {
	case simulated && s.RootFingerprint == "":
		bad(p+".rootFingerprint", "required for simulated: the SHA-256 of the simulated root certificate (meshctl sim-tee init prints it)")
	case s.RootFingerprint != "" && (len(s.RootFingerprint) != 64 || !hexRE.MatchString(s.RootFingerprint)):
		bad(p+".rootFingerprint", "want 64 lower-case hex characters, got %d", len(s.RootFingerprint))
	}
}

// usable reports whether ip is a host address of prefix (not its network address,
// and for IPv4 not its broadcast address).
func usable(prefix netip.Prefix, ip netip.Addr) bool {
	if !prefix.Contains(ip) || ip == prefix.Addr() {
		return false
	}
	if ip.Is4() {
		return ip != LastAddr(prefix)
	}
	return true
}

// LastAddr returns the highest address in prefix.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func validPort(s string) bool {
	if s == "any" {
		return true
	}
	lo, hi, isRange := strings.Cut(s, "-")
	var a, b int
	if _, err := fmt.Sscanf(lo, "%d", &a); err != nil || fmt.Sprint(a) != lo || a < 1 || a > 65535 {
		return false
	}
	if !isRange {
		return true
	}
	if _, err := fmt.Sscanf(hi, "%d", &b); err != nil || fmt.Sprint(b) != hi || b < a || b > 65535 {
		return false
	}
	return true
}
