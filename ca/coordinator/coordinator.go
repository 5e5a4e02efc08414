// Package coordinator is the coordinator's logic: it holds the manifest and the CA,
// issues nonces, checks evidence against the manifest's roles and signs Nebula
// certificates whose name, IP and groups it assigns (invariant C).
package coordinator

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/api"
	"github.com/sealmesh/sealmesh/ca/issuer"
	"github.com/sealmesh/sealmesh/ca/manifest"
	"github.com/sealmesh/sealmesh/ca/store"
)

const (
	manifestName = "manifest.json"
	caCertName   = "ca.crt"

	// NonceLifetime bounds how old evidence may be.
	NonceLifetime = 2 * time.Minute
	// maxNonces caps outstanding nonces so a flood cannot exhaust memory.
	maxNonces = 100_000
	// caLifetime: the CA outlives every host certificate; rotation arrives with
	// the signed history.
	caLifetime = 365 * 24 * time.Hour
	// lighthouseGroup is the group every lighthouse certificate carries.
	lighthouseGroup = "lighthouse"
)

// Errors that map to HTTP statuses.
var (
	ErrNotReady = errors.New("coordinator is not ready")
	ErrRefused  = errors.New("refused")
	ErrBadInput = errors.New("bad request")
	ErrConflict = errors.New("conflict")
)

// Coordinator serves one mesh.
type Coordinator struct {
	log   *slog.Logger
	st    *store.File
	now   func() time.Time
	mu    sync.Mutex
	state string
	msg   string
	m     *manifest.Manifest
	ca    *issuer.CA
	alloc *issuer.Allocator
	// nonces maps an outstanding nonce to its expiry. A nonce is deleted when
	// an enrolment presents it, whatever the outcome: single use.
	nonces map[string]time.Time
}

// New opens the coordinator's state in st.
func New(log *slog.Logger, st *store.File, now func() time.Time) (*Coordinator, error) {
	c := &Coordinator{log: log, st: st, now: now, state: api.StateWaiting, nonces: map[string]time.Time{}}
	b, err := st.Get(manifestName)
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.Info("no manifest yet; waiting for meshctl set")
	case err != nil:
		return nil, err
	default:
		m, err := manifest.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("coordinator: stored manifest: %w", err)
		}
		c.m = m
		c.state = api.StateLocked
		c.msg = "the store holds a mesh whose CA key this process does not have; " +
			"restarting a coordinator keeps no secrets yet, so start it with an empty state directory and set the manifest again"
		log.Warn("coordinator locked", "reason", c.msg, "manifest", m.Hash())
	}
	return c, nil
}

// SetManifest bootstraps the mesh: it makes the CA and opens the allocator. Only
// the first manifest is accepted; owner-signed updates come with the history.
func (c *Coordinator) SetManifest(raw []byte) (*api.Status, error) {
	m, err := manifest.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInput, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m != nil {
		if c.m.Hash() == m.Hash() && c.state == api.StateReady {
			return c.statusLocked(), nil // idempotent retry
		}
		return nil, fmt.Errorf("%w: a manifest is already set (%s); updates are not supported yet", ErrConflict, c.m.Hash())
	}
	ca, err := issuer.NewCA("sealmesh "+m.Hash()[:12], m.Prefix(), caLifetime, c.now())
	if err != nil {
		return nil, err
	}
	alloc, err := issuer.NewAllocator(c.st, m)
	if err != nil {
		return nil, err
	}
	// The CA certificate is public; the key stays in memory (invariant E).
	if err := c.st.Put(caCertName, ca.PEM()); err != nil {
		return nil, err
	}
	if err := c.st.Put(manifestName, m.Canonical()); err != nil {
		return nil, err
	}
	c.m, c.ca, c.alloc, c.state, c.msg = m, ca, alloc, api.StateReady, ""
	c.log.Info("manifest set", "manifest", m.Hash(), "ca", ca.Fingerprint(), "network", m.Network)
	if m.AcceptsSimulated() {
		c.log.Warn("this mesh accepts SIMULATED attestation: evidence from a development TEE proves nothing about hardware; never use it for real workloads")
	}
	return c.statusLocked(), nil
}

// Nonce issues a fresh single-use nonce.
func (c *Coordinator) Nonce() (*api.NonceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != api.StateReady {
		return nil, fmt.Errorf("%w: %s", ErrNotReady, c.state)
	}
	now := c.now()
	if len(c.nonces) >= maxNonces {
		for n, exp := range c.nonces {
			if !exp.After(now) {
				delete(c.nonces, n)
			}
		}
		if len(c.nonces) >= maxNonces {
			return nil, fmt.Errorf("%w: too many outstanding nonces, retry shortly", ErrNotReady)
		}
	}
	n := make([]byte, 32)
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	exp := now.Add(NonceLifetime)
	c.nonces[string(n)] = exp
	return &api.NonceResponse{Nonce: n, Expires: exp}, nil
}

// takeNonce consumes a nonce; it reports whether it was outstanding and fresh.
func (c *Coordinator) takeNonceLocked(n []byte) error {
	exp, ok := c.nonces[string(n)]
	delete(c.nonces, string(n))
	switch {
	case !ok:
		return fmt.Errorf("%w: unknown or already used nonce; ask for a new one", ErrRefused)
	case !exp.After(c.now()):
		return fmt.Errorf("%w: nonce expired; ask for a new one", ErrRefused)
	}
	return nil
}

// identity is what the manifest assigns to a requester.
type identity struct {
	name   string
	role   string
	groups []string
	fixed  netip.Addr // lighthouses only
}

// Enrol checks the request and issues a certificate.
func (c *Coordinator) Enrol(req *api.EnrolRequest) (*api.EnrolResponse, error) {
	if len(req.PublicKey) != 32 {
		return nil, fmt.Errorf("%w: publicKey is %d bytes, want a 32-byte X25519 key", ErrBadInput, len(req.PublicKey))
	}
	c.mu.Lock()
	if c.state != api.StateReady {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotReady, c.state)
	}
	err := c.takeNonceLocked(req.Nonce)
	m, ca, alloc := c.m, c.ca, c.alloc
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}

	id, err := c.identify(m, req)
	if err != nil {
		c.log.Warn("enrolment refused", "workload", workloadString(req.Workload), "err", err)
		return nil, err
	}

	now := c.now()
	ip, err := alloc.Allocate(id.fixed, now)
	if err != nil {
		return nil, err
	}
	issued := false
	defer func() {
		if !issued {
			alloc.Forget(ip)
		}
	}()
	if id.name == "" {
		id.name = id.role + "-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
	}
	network := netip.PrefixFrom(ip, m.Prefix().Bits())
	crt, err := ca.Sign(issuer.Host{
		Name:      id.name,
		Network:   network,
		Groups:    id.groups,
		PublicKey: req.PublicKey,
		NotAfter:  now.Add(m.Lifetime()),
	}, now)
	if err != nil {
		return nil, err
	}
	certPEM, err := crt.MarshalPEM()
	if err != nil {
		return nil, err
	}
	fp, err := crt.Fingerprint()
	if err != nil {
		return nil, err
	}
	release := make([]byte, 32)
	if _, err := rand.Read(release); err != nil {
		return nil, err
	}
	releaseToken := hex.EncodeToString(release)
	if err := alloc.Record(issuer.Lease{
		IP: ip, Name: id.name, Role: id.role, Groups: id.groups, Fingerprint: fp,
		NotAfter: crt.NotAfter(), Workload: workloadString(req.Workload), ReleaseHash: hashHex(releaseToken),
	}); err != nil {
		return nil, err
	}
	issued = true
	c.log.Info("certificate issued", "name", id.name, "role", id.role, "ip", network, "fingerprint", fp, "workload", workloadString(req.Workload))

	resp := &api.EnrolResponse{
		Name: id.name, Role: id.role, IP: network.String(), Groups: id.groups,
		NotAfter: crt.NotAfter(), Certificate: string(certPEM), CA: string(ca.PEM()),
		Inbound: inbound(m, id), ReleaseToken: releaseToken,
	}
	for _, l := range m.Lighthouses {
		resp.Lighthouses = append(resp.Lighthouses, api.Lighthouse{OverlayIP: l.OverlayIP, Underlay: l.Underlay})
	}
	return resp, nil
}

// identify matches the request to exactly what the manifest allows: a lighthouse
// by its token, a workload by its evidence. Nothing else in the request counts.
func (c *Coordinator) identify(m *manifest.Manifest, req *api.EnrolRequest) (identity, error) {
	switch {
	case req.JoinToken != "" && req.Evidence != nil:
		return identity{}, fmt.Errorf("%w: send evidence or a join token, not both", ErrBadInput)
	case req.JoinToken != "":
		sum := hashHex(req.JoinToken)
		for _, l := range m.Lighthouses {
			if subtle.ConstantTimeCompare([]byte(sum), []byte(l.TokenSHA256)) == 1 {
				return identity{name: l.Name, role: lighthouseGroup, groups: []string{lighthouseGroup}, fixed: netip.MustParseAddr(l.OverlayIP)}, nil
			}
		}
		return identity{}, fmt.Errorf("%w: join token matches no lighthouse of the manifest", ErrRefused)
	case req.Evidence == nil:
		return identity{}, fmt.Errorf("%w: no evidence and no join token", ErrBadInput)
	}

	rd := attest.ReportData(req.Nonce, req.PublicKey, req.Binding())
	claims, err := attest.Verify(attest.Evidence{Platform: req.Evidence.Platform, Data: req.Evidence.Data}, rd)
	if err != nil {
		return identity{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	var why []string
	for _, r := range m.Roles {
		if err := claims.Satisfies(r.Attestation); err != nil {
			why = append(why, fmt.Sprintf("role %s: %v", r.Name, err))
			continue
		}
		return identity{role: r.Name, groups: r.Groups}, nil
	}
	return identity{}, fmt.Errorf("%w: %s evidence matches no role of manifest %s: %s",
		ErrRefused, claims.Platform, m.Hash()[:12], strings.Join(why, "; "))
}

// inbound turns the manifest's rules between groups into the Nebula inbound rules
// of one host. Nebula's `groups` means all of them, so "from any of" becomes one
// rule per group.
func inbound(m *manifest.Manifest, id identity) []api.FirewallRule {
	var out []api.FirewallRule
	if id.role == lighthouseGroup {
		return []api.FirewallRule{{Proto: "icmp", Port: "any"}}
	}
	for _, r := range m.Firewall {
		has := false
		for _, g := range id.groups {
			has = has || g == r.To
		}
		if !has {
			continue
		}
		port := r.Port
		if r.Proto == "icmp" {
			port = "any"
		}
		for _, from := range r.From {
			if from == "any" {
				from = ""
			}
			out = append(out, api.FirewallRule{Proto: r.Proto, Port: port, Group: from})
		}
	}
	return out
}

// Release ends a lease (CNI DEL).
func (c *Coordinator) Release(req *api.ReleaseRequest) error {
	c.mu.Lock()
	alloc := c.alloc
	c.mu.Unlock()
	if alloc == nil {
		return fmt.Errorf("%w: %s", ErrNotReady, c.state)
	}
	if err := alloc.Release(req.Fingerprint, hashHex(req.ReleaseToken)); err != nil {
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return nil
}

// Status reports the mesh as the coordinator sees it.
func (c *Coordinator) Status() *api.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statusLocked()
}

// Ready reports whether the coordinator can enrol.
func (c *Coordinator) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == api.StateReady
}

func (c *Coordinator) statusLocked() *api.Status {
	s := &api.Status{State: c.state, Message: c.msg, Hosts: []api.Host{}}
	if c.m != nil {
		s.ManifestHash = c.m.Hash()
		s.AcceptsSimulated = c.m.AcceptsSimulated()
	}
	if c.ca != nil {
		s.CAFingerprint = c.ca.Fingerprint()
	}
	if c.alloc != nil {
		for _, l := range c.alloc.Live(c.now()) {
			s.Hosts = append(s.Hosts, api.Host{
				Name: l.Name, Role: l.Role, IP: l.IP.String(), Groups: l.Groups,
				NotAfter: l.NotAfter, Fingerprint: l.Fingerprint, Workload: l.Workload,
			})
		}
	}
	return s
}

func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func workloadString(w api.Workload) string {
	if w.Namespace == "" && w.Name == "" {
		return ""
	}
	return w.Namespace + "/" + w.Name
}
