// Package manifest defines what a mesh is allowed to contain: its overlay network,
// the roles a workload can attest into (with the Nebula groups each role gets), the
// lighthouses, and the firewall between groups. The coordinator assigns identity only
// from a manifest; nothing a requester sends can add to it (invariant C).
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/internal/hexstr"
	"github.com/sealmesh/sealmesh/internal/strictjson"
)

// Version is the manifest format this code reads.
const Version = 1

// DefaultCertificateLifetime applies when the manifest names none.
const DefaultCertificateLifetime = 24 * time.Hour

// Manifest is the workload owner's statement of the mesh.
type Manifest struct {
	// Version of the manifest format; must be 1.
	Version int `json:"version"`
	// Networks are the overlay prefixes: one, or one IPv4 and one IPv6. The
	// allocator picks a host's offset in the first; the host gets the address at
	// that offset in each of them.
	Networks []string `json:"networks"`
	// CertificateLifetime bounds every host certificate, e.g. "24h"; a role may
	// set a shorter one.
	CertificateLifetime string `json:"certificateLifetime,omitempty"`
	Roles               []Role `json:"roles"`
	// Coordinators are the roles a coordinator may attest as; only peers
	// matching one receive or give keys (invariants A and B). Several allow
	// rolling upgrades and mixed SNP/TDX clusters.
	Coordinators []CoordinatorRole `json:"coordinators,omitempty"`
	Lighthouses  []Lighthouse      `json:"lighthouses"`
	// JoinTokens admit lighthouses and hosts of joinToken roles without
	// TEE evidence (meshctl token create). Only the hashes of their secrets
	// are here.
	JoinTokens []JoinToken `json:"joinTokens,omitempty"`
	Firewall   []Rule      `json:"firewall,omitempty"`
	// Revoked certificates (meshctl revoke): every host refuses them and
	// closes their tunnels, and no coordinator issues another certificate to
	// their key.
	Revoked []Revoked `json:"revoked,omitempty"`
	// Owners may change the manifest: every transition is signed by one of the
	// previous manifest's owners (the first by one of its own). A manifest
	// without owners is final: no transition may follow it (Immutable).
	Owners []PublicKey `json:"owners"`
	// CA is the mesh CA's generation; meshctl rotate ca moves it in two
	// owner-signed steps. nil: generation 1.
	CA *CAGeneration `json:"ca,omitempty"`
	// UpdateThreshold, when above one, is how many distinct owners of this
	// manifest must sign the transition that replaces it (meshctl manifest
	// propose and approve); 0 or 1: any one owner.
	UpdateThreshold int `json:"updateThreshold,omitempty"`
	// SeedShareOwners receive the seed, encrypted to them, when the mesh is
	// created, for disaster recovery. Fixed after the first manifest.
	SeedShareOwners []PublicKey `json:"seedShareOwners,omitempty"`
	// SeedShareThreshold, when 2 or more, splits the seed k-of-n (Shamir)
	// among the seed-share owners: any k of their shares recover the mesh,
	// fewer reveal nothing. 0: each owner gets the whole seed. Fixed after
	// the first manifest.
	SeedShareThreshold int `json:"seedShareThreshold,omitempty"`
}

// Revoked is one revoked certificate.
type Revoked struct {
	// Fingerprint is the certificate's (hex SHA-256, as Nebula prints it).
	Fingerprint string `json:"fingerprint"`
	// Holder names its public key (ipam.Holder); empty revokes only the
	// certificate, not its key.
	Holder string `json:"holder,omitempty"`
	// Name is for people: what the certificate was issued to.
	Name string `json:"name,omitempty"`
}

// Role is a kind of workload: the evidence that proves it and the groups it gets.
type Role struct {
	Name        string             `json:"name"`
	Groups      []string           `json:"groups"`
	Attestation attest.Attestation `json:"attestation"`
	// CertificateLifetime, when set, overrides the manifest's for this role.
	CertificateLifetime string `json:"certificateLifetime,omitempty"`
	// PodSelector picks this role for pods in node mode.
	PodSelector *PodSelector `json:"podSelector,omitempty"`
	// JoinToken admits hosts of this role with a join token instead of
	// evidence (VMs and bare metal running stock Nebula): such a role has
	// no attestation, and its certificates also carry JoinTokenGroup.
	JoinToken bool `json:"joinToken,omitempty"`
}

// JoinTokenGroup is on every certificate issued to a host admitted by a join
// token, so that firewall rules can tell such hosts from attested ones.
const JoinTokenGroup = "joined-by-token"

// LighthouseRole is the role a join token names to admit a lighthouse.
const LighthouseRole = "lighthouse"

// JoinToken admits one kind of host. The secret is the joiner's; the
// manifest holds its hash, and what the host becomes (role; for a
// lighthouse, which one) is decided here, never by the joiner.
type JoinToken struct {
	// SHA256 is the hex SHA-256 of the token's secret (jointoken.Token.Hash).
	SHA256 string `json:"sha256"`
	// Role is a role with joinToken set, or "lighthouse".
	Role string `json:"role"`
	// Name is the lighthouse the token admits (required for role
	// lighthouse); for other roles, the host name its certificates get
	// (otherwise role-IP).
	Name string `json:"name,omitempty"`
	// Expires, when set, ends the token's use for new hosts; hosts it
	// admitted keep renewing with their certificates.
	Expires *time.Time `json:"expires,omitempty"`
	// Uses, when above zero, is how many distinct keys may join with it.
	Uses int `json:"uses,omitempty"`
}

// ID is the token's public name (its hash's first 12 characters), as meshctl
// token list shows it and revoke takes it.
func (t JoinToken) ID() string {
	if len(t.SHA256) < 12 {
		return t.SHA256
	}
	return t.SHA256[:12]
}

// JoinTokenByID returns the token whose ID is id.
func (m *Manifest) JoinTokenByID(id string) (int, bool) {
	for i, t := range m.JoinTokens {
		if t.ID() == id {
			return i, true
		}
	}
	return -1, false
}

// LighthouseNamed returns the lighthouse called name.
func (m *Manifest) LighthouseNamed(name string) (*Lighthouse, bool) {
	for i := range m.Lighthouses {
		if m.Lighthouses[i].Name == name {
			return &m.Lighthouses[i], true
		}
	}
	return nil, false
}

// PodSelector matches pods by namespace and service account; an empty list
// matches any.
type PodSelector struct {
	Namespaces      []string `json:"namespaces,omitempty"`
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
}

// Matches reports whether a pod in namespace running as serviceAccount is
// selected; a nil selector selects every pod.
func (s *PodSelector) Matches(namespace, serviceAccount string) bool {
	if s == nil {
		return true
	}
	return (len(s.Namespaces) == 0 || slices.Contains(s.Namespaces, namespace)) &&
		(len(s.ServiceAccounts) == 0 || slices.Contains(s.ServiceAccounts, serviceAccount))
}

// RoleName and RolePolicy make a Role an attest.Role.
func (r Role) RoleName() string { return r.Name }

// RolePolicy is the role's attestation policy.
func (r Role) RolePolicy() attest.Attestation { return r.Attestation }

// RoleName and RolePolicy make a CoordinatorRole an attest.Role.
func (r CoordinatorRole) RoleName() string { return r.Name }

// RolePolicy is the coordinator role's attestation policy.
func (r CoordinatorRole) RolePolicy() attest.Attestation { return r.Attestation }

// CoordinatorRole is evidence a coordinator must show.
type CoordinatorRole struct {
	Name        string             `json:"name"`
	Attestation attest.Attestation `json:"attestation"`
}

// PublicKey names a key holder: an owner (Ed25519) or a seed-share owner (X25519).
type PublicKey struct {
	Name string `json:"name"`
	// Key is the base64 (standard encoding) of the raw 32-byte public key.
	Key string `json:"key"`
}

// Lighthouse is a Nebula lighthouse with a fixed overlay IP, enrolled with a
// join token whose role is "lighthouse" and whose name is the lighthouse's.
type Lighthouse struct {
	Name      string `json:"name"`
	OverlayIP string `json:"overlayIP"`
	// Underlay is the host:port every node uses to reach it.
	Underlay string `json:"underlay"`
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
	return ParseJSON(js)
}

// ParseJSON reads a manifest in JSON only, as the store holds it (Canonical):
// the YAML step of Parse dominates loading a long history.
func ParseJSON(js []byte) (*Manifest, error) {
	var m Manifest
	if err := strictjson.Decode(js, &m); err != nil {
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

// Prefixes returns the parsed overlay networks. Valid only after Validate.
func (m *Manifest) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(m.Networks))
	for i, n := range m.Networks {
		out[i] = netip.MustParsePrefix(n).Masked()
	}
	return out
}

// Prefix returns the first overlay network, the one addresses are allocated in.
func (m *Manifest) Prefix() netip.Prefix { return m.Prefixes()[0] }

// HostAddrs returns a host's address in every network, with the network's prefix
// length, given its address in the first.
func (m *Manifest) HostAddrs(first netip.Addr) []netip.Prefix {
	ps := m.Prefixes()
	off := offset(ps[0].Addr(), first)
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = netip.PrefixFrom(addOffset(p.Addr(), off), p.Bits())
	}
	return out
}

// offset is a - base for two addresses of one family (host offsets fit 64 bits).
func offset(base, a netip.Addr) uint64 {
	b16, a16 := base.As16(), a.As16()
	return binary.BigEndian.Uint64(a16[8:]) - binary.BigEndian.Uint64(b16[8:])
}

func addOffset(base netip.Addr, off uint64) netip.Addr {
	b := base.As16()
	binary.BigEndian.PutUint64(b[8:], binary.BigEndian.Uint64(b[8:])+off)
	a := netip.AddrFrom16(b)
	if base.Is4() {
		return a.Unmap()
	}
	return a
}

func hostBits(p netip.Prefix) int { return p.Addr().BitLen() - p.Bits() }

// RevokedHolder reports whether holder's key is revoked.
func (m *Manifest) RevokedHolder(holder string) bool {
	for _, r := range m.Revoked {
		if r.Holder != "" && r.Holder == holder {
			return true
		}
	}
	return false
}

// RevokedHolders returns the keys (holders) whose every certificate is
// revoked.
func (m *Manifest) RevokedHolders() []string {
	var out []string
	for _, r := range m.Revoked {
		if r.Holder != "" {
			out = append(out, r.Holder)
		}
	}
	return out
}

// Blocklist returns the revoked certificates' fingerprints.
func (m *Manifest) Blocklist() []string {
	out := make([]string, 0, len(m.Revoked))
	for _, r := range m.Revoked {
		out = append(out, r.Fingerprint)
	}
	return out
}

// Lifetime returns the certificate lifetime. Valid only after Validate.
func (m *Manifest) Lifetime() time.Duration {
	if m.CertificateLifetime == "" {
		return DefaultCertificateLifetime
	}
	d, _ := time.ParseDuration(m.CertificateLifetime)
	return d
}

// RoleLifetime returns a role's certificate lifetime. Valid only after Validate.
func (m *Manifest) RoleLifetime(r *Role) time.Duration {
	if r == nil || r.CertificateLifetime == "" {
		return m.Lifetime()
	}
	d, _ := time.ParseDuration(r.CertificateLifetime)
	return d
}

// Owner returns the owner whose key is pub.
func (m *Manifest) Owner(pub []byte) (PublicKey, bool) {
	for _, o := range m.Owners {
		if k, err := base64.StdEncoding.DecodeString(o.Key); err == nil && bytes.Equal(k, pub) {
			return o, true
		}
	}
	return PublicKey{}, false
}

// CAGeneration names the CA certificates are issued under: generation g's
// key is derived from the seed, so recovery needs nothing more.
type CAGeneration struct {
	Generation uint64 `json:"generation"`
	// TrustPrevious keeps generation g-1 trusted by every host: the first
	// step of a rotation, while hosts renew onto g. meshctl rotate ca
	// --finish clears it, and certificates under g-1 are refused.
	TrustPrevious bool `json:"trustPrevious,omitempty"`
}

// CAGen is the generation certificates are issued under (1 unless set).
func (m *Manifest) CAGen() uint64 {
	if m.CA == nil || m.CA.Generation == 0 {
		return 1
	}
	return m.CA.Generation
}

// TrustsPreviousCA reports whether hosts still trust generation CAGen()-1.
func (m *Manifest) TrustsPreviousCA() bool { return m.CA != nil && m.CA.TrustPrevious }

// CAStep checks that next's CA follows cur's by the rotation rules: the
// same generation (trusting the previous one no longer, or as before), or
// the next generation with the previous one still trusted.
func CAStep(cur, next *Manifest) error {
	g, h := cur.CAGen(), next.CAGen()
	switch {
	case h == g && (next.TrustsPreviousCA() == cur.TrustsPreviousCA() || !next.TrustsPreviousCA()):
		return nil
	case h == g:
		return fmt.Errorf("ca.trustPrevious: a finished rotation cannot trust generation %d again", g-1)
	case h == g+1 && next.TrustsPreviousCA():
		return nil
	case h == g+1:
		return fmt.Errorf("ca: generation %d must first trust generation %d too (trustPrevious: true), so that hosts keep talking while they renew (meshctl rotate ca)", h, g)
	}
	return fmt.Errorf("ca.generation: from %d to %d; a rotation moves one generation at a time", g, h)
}

// UpdateThresholdOrOne is how many owners must sign this manifest's
// successor.
func (m *Manifest) UpdateThresholdOrOne() int { return max(1, m.UpdateThreshold) }

// Immutable reports whether the manifest is final: it has no owners, so
// no transition may follow it.
func (m *Manifest) Immutable() bool { return len(m.Owners) == 0 }

// Role returns the role with the given name.
func (m *Manifest) Role(name string) (*Role, bool) {
	for i := range m.Roles {
		if m.Roles[i].Name == name {
			return &m.Roles[i], true
		}
	}
	return nil, false
}

// AcceptsSimulated reports whether any role, workload or coordinator, accepts
// the development-only platform. A simulated coordinator role is the worse
// case: whoever runs the simulated TEE can receive the seed.
func (m *Manifest) AcceptsSimulated() bool {
	return m.SimulatedCoordinators() || slices.ContainsFunc(m.Roles, func(r Role) bool { return r.Attestation.Simulated != nil })
}

// SimulatedCoordinators reports whether a coordinator role accepts the
// simulated TEE.
func (m *Manifest) SimulatedCoordinators() bool {
	return slices.ContainsFunc(m.Coordinators, func(r CoordinatorRole) bool { return r.Attestation.Simulated != nil })
}

// CoordinatorPlatforms lists the platforms any coordinator role names.
func (m *Manifest) CoordinatorPlatforms() []string {
	var out []string
	for _, r := range m.Coordinators {
		for _, p := range r.Attestation.Platforms() {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	groupRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
)

// Validate checks every field and reports each problem with its path and the fix.
func (m *Manifest) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if m.Version != Version {
		bad("version", "want %d, got %d", Version, m.Version)
	}

	var prefix netip.Prefix // the first network, where addresses are allocated
	switch n := len(m.Networks); {
	case n == 0:
		bad("networks", "required: the overlay prefix, e.g. [10.42.0.0/16], or an IPv4 and an IPv6 one")
	case n > 2:
		bad("networks", "want one IPv4 and at most one IPv6 prefix, got %d", n)
	}
	families := map[bool]bool{}
	for i, n := range m.Networks {
		p := fmt.Sprintf("networks[%d]", i)
		pr, err := netip.ParsePrefix(n)
		switch {
		case err != nil:
			bad(p, "want a prefix like 10.42.0.0/16 or fd42::/64, got %q", n)
			continue
		case pr.Addr().Is4() && pr.Bits() > 30:
			bad(p, "prefix /%d leaves no room for hosts; use /30 or shorter", pr.Bits())
		case pr.Addr().Is6() && pr.Bits() > 126:
			bad(p, "prefix /%d leaves no room for hosts; use /126 or shorter", pr.Bits())
		case families[pr.Addr().Is4()]:
			bad(p, "a second %s network; want at most one of each family", map[bool]string{true: "IPv4", false: "IPv6"}[pr.Addr().Is4()])
		}
		families[pr.Addr().Is4()] = true
		pr = pr.Masked()
		if i == 0 {
			prefix = pr
		} else if prefix.IsValid() && hostBits(pr) < hostBits(prefix) {
			bad(p, "has fewer addresses than networks[0] (/%d); every host gets the same offset in each network", pr.Bits())
		} else if pr.Addr().Is6() && pr.Bits() < 64 {
			bad(p, "use /64 or longer: host offsets are taken in the last 64 bits")
		}
	}

	checkLifetime(bad, "certificateLifetime", m.CertificateLifetime)
	if m.CA != nil && m.CA.TrustPrevious && m.CAGen() < 2 {
		bad("ca.trustPrevious", "generation %d has no previous generation to trust", m.CAGen())
	}
	for i, r := range m.Revoked {
		p := fmt.Sprintf("revoked[%d]", i)
		if err := hexstr.Check(r.Fingerprint, 64); err != nil {
			bad(p+".fingerprint", "%v", err)
		}
		if err := hexstr.Check(r.Holder, 32); r.Holder != "" && err != nil {
			bad(p+".holder", "%v", err)
		}
	}

	if len(m.Roles) == 0 {
		bad("roles", "at least one role is required")
	}
	seenRole := map[string]bool{}
	// Certificates issued on a service-account token also carry this group
	// (attest.TokenGroup), so rules may name it.
	groups := map[string]bool{"attested-by-token": true, JoinTokenGroup: true, LighthouseRole: true}
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
		switch {
		case r.JoinToken && r.Attestation != (attest.Attestation{}):
			bad(p+".attestation", "a joinToken role is admitted by token, not evidence: remove attestation, or joinToken")
		case r.JoinToken && r.PodSelector != nil:
			bad(p+".podSelector", "a joinToken role admits hosts, not pods: remove podSelector")
		case r.Name == LighthouseRole:
			bad(p+".name", "%q is the lighthouses' role; name this one otherwise", r.Name)
		case !r.JoinToken:
			r.Attestation.Check(p+".attestation", bad)
		}
		checkLifetime(bad, p+".certificateLifetime", r.CertificateLifetime)
		if r.PodSelector != nil {
			for j, n := range r.PodSelector.Namespaces {
				if !nameRE.MatchString(n) {
					bad(fmt.Sprintf("%s.podSelector.namespaces[%d]", p, j), "want a namespace name, got %q", n)
				}
			}
		}
	}
	for i, c := range m.Coordinators {
		p := fmt.Sprintf("coordinators[%d]", i)
		if !nameRE.MatchString(c.Name) {
			bad(p+".name", "want a DNS label, got %q", c.Name)
		}
		if c.Attestation.OIDC != nil {
			bad(p+".attestation.oidc", "a coordinator must attest with a TEE, not a service-account token")
		}
		c.Attestation.Check(p+".attestation", bad)
	}
	checkKeys(bad, "owners", m.Owners)
	if t := m.UpdateThreshold; t < 0 || (t > 1 && t > len(m.Owners)) {
		bad("updateThreshold", "want 0 or 1 (any owner) up to the number of owners (%d), got %d", len(m.Owners), t)
	}
	checkKeys(bad, "seedShareOwners", m.SeedShareOwners)
	if t := m.SeedShareThreshold; t != 0 && (t < 2 || t > len(m.SeedShareOwners)) {
		bad("seedShareThreshold", "want 0 (each seed-share owner gets the whole seed) or 2 to the number of seed-share owners (%d), got %d", len(m.SeedShareOwners), t)
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
	}
	seenHash := map[string]bool{}
	for i, t := range m.JoinTokens {
		p := fmt.Sprintf("joinTokens[%d]", i)
		if err := hexstr.Check(t.SHA256, 64); err != nil {
			bad(p+".sha256", "%v (meshctl token create writes it)", err)
		} else if seenHash[t.ID()] {
			bad(p+".sha256", "another token has ID %s", t.ID())
		}
		seenHash[t.ID()] = true
		if t.Uses < 0 {
			bad(p+".uses", "want 0 (any number) or more, got %d", t.Uses)
		}
		if t.Role == LighthouseRole {
			if _, ok := m.LighthouseNamed(t.Name); !ok {
				bad(p+".name", "a lighthouse token names one of lighthouses[].name, got %q", t.Name)
			}
			continue
		}
		r, ok := m.Role(t.Role)
		switch {
		case !ok:
			bad(p+".role", "want %q or a role with joinToken: true, got %q", LighthouseRole, t.Role)
		case !r.JoinToken:
			bad(p+".role", "role %q is admitted by evidence; set joinToken: true on it, or name another", t.Role)
		}
		if t.Name != "" && !nameRE.MatchString(t.Name) {
			bad(p+".name", "want a DNS label, got %q", t.Name)
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

func checkLifetime(bad func(string, string, ...any), p, v string) {
	if v == "" {
		return
	}
	d, err := time.ParseDuration(v)
	// Down to 10 s: hosts renew at two thirds of it, so short lifetimes cost
	// coordinator work, but they are the owner's choice (and the tests').
	if err != nil || d < 10*time.Second || d > 365*24*time.Hour {
		bad(p, "want a duration between 10s and 8760h, got %q", v)
	}
}

func checkKeys(bad func(string, string, ...any), p string, keys []PublicKey) {
	seen := map[string]bool{}
	for i, k := range keys {
		q := fmt.Sprintf("%s[%d]", p, i)
		if !nameRE.MatchString(k.Name) {
			bad(q+".name", "want a DNS label, got %q", k.Name)
		} else if seen[k.Name] {
			bad(q+".name", "%q is listed twice", k.Name)
		}
		seen[k.Name] = true
		if b, err := base64.StdEncoding.DecodeString(k.Key); err != nil || len(b) != 32 {
			bad(q+".key", "want the base64 of a 32-byte public key (meshctl keygen prints it)")
		}
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
