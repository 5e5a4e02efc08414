// Package enrol is the coordinator's enrolment service: a nonce, then
// evidence (or a lighthouse's join token) checked against the manifest's
// roles, then a Nebula certificate whose name, IP and groups the manifest and
// the allocator assign. Nothing the requester asks for reaches the
// certificate (invariant C): this file is the code behind it.
package enrol

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/ipam"
	"github.com/sealmesh/sealmesh/ca/issuer"
	"github.com/sealmesh/sealmesh/ca/nonce"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/tokenuse"
	"github.com/sealmesh/sealmesh/internal/ratelimit"
	"github.com/sealmesh/sealmesh/jointoken"
	"github.com/sealmesh/sealmesh/manifest"
)

const (
	// NonceLifetime bounds how old evidence may be.
	NonceLifetime = 2 * time.Minute
	// MaxRedeemed caps the nonces remembered as used (each until it
	// expires); only verified enrolments redeem one.
	MaxRedeemed = 100_000
	// LighthouseGroup is the group every lighthouse certificate carries.
	LighthouseGroup = "lighthouse"
)

// Serving is the verified state an enrolment is served from, taken whole
// and without a lock for each request.
type Serving struct {
	Hist  *history.State
	CA    *issuer.CA
	Alloc *ipam.Allocator
	// Store keeps the join tokens' uses (package tokenuse).
	Store store.Store
}

// Service enrols and releases.
type Service struct {
	log      *slog.Logger
	verifier *attest.Verifier
	now      func() time.Time
	// serving returns what to serve from, or api.ErrNotReady.
	serving func() (Serving, error)
	// nonces issues and redeems nonces; it has its own lock and stores
	// nothing until a verified request redeems one.
	nonces *nonce.Issuer
	// possession is this process's key for proofs of possession
	// (api.Prove), handed out with each nonce.
	possession *ecdh.PrivateKey
	// tokenFailures limits failed join-token attempts per source address.
	tokenFailures *ratelimit.PerSource
	metrics       metrics
}

// Failed join-token attempts a source may make: a burst, then one a minute.
// Secrets have 160 bits, so this is not what stops guessing; it keeps a
// scanner from filling the log and the CPU.
const (
	tokenFailureBurst = 10
	tokenFailureRate  = 1.0 / 60
)

// New makes the service. serving is called once per request.
func New(log *slog.Logger, v *attest.Verifier, now func() time.Time, serving func() (Serving, error)) (*Service, error) {
	possession, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &Service{log: log, verifier: v, now: now, serving: serving, possession: possession,
		nonces: nonce.New(NonceLifetime, MaxRedeemed, now), metrics: newMetrics(),
		tokenFailures: ratelimit.NewBurst(tokenFailureRate, tokenFailureBurst, now)}, nil
}

// Nonce issues a fresh single-use nonce. Issuing stores nothing (package
// nonce), so asking for nonces cannot crowd out anyone's enrolment.
func (s *Service) Nonce(context.Context) (*api.NonceResponse, error) {
	if _, err := s.serving(); err != nil {
		return nil, err
	}
	return s.spare(), nil
}

// spare is a nonce for the requester's next enrolment here, sent with this
// one's answer so that it need not ask (api.EnrolResponse.Next).
func (s *Service) spare() *api.NonceResponse {
	n, exp := s.nonces.Issue()
	return &api.NonceResponse{Nonce: n, Expires: exp, PossessionKey: s.possession.PublicKey().Bytes()}
}

// identity is what the manifest assigns to a requester.
type identity struct {
	name   string
	role   string
	groups []string
	fixed  netip.Addr // lighthouses only
	ttl    time.Duration
	// workload is the pod as proven: the token's for token enrolments, the
	// request's (bound into the evidence) otherwise.
	workload api.Workload
	// token is the join token that admitted the requester, if one did.
	token *manifest.JoinToken
}

// Enrol checks the request and issues a certificate.
func (s *Service) Enrol(ctx context.Context, req *api.EnrolRequest) (resp *api.EnrolResponse, err error) {
	defer func(start time.Time) {
		// A bug below must not count as an issued certificate (err was
		// nil when it panicked), nor leave the request without an answer.
		if r := recover(); r != nil {
			s.log.Error("enrolment panicked", "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("internal error in enrolment (logged by the coordinator)")
		}
		s.metrics.observe(start, err)
	}(time.Now())
	if len(req.PublicKey) != 32 {
		return nil, fmt.Errorf("%w: publicKey is %d bytes, want a 32-byte X25519 key", api.ErrBadInput, len(req.PublicKey))
	}
	sv, err := s.serving()
	if err != nil {
		return nil, err
	}
	// The certificate is made from sv alone: checked against it, the
	// expected head holds for what is issued.
	if err := api.CheckHead(ctx, sv.Hist.Head); err != nil {
		return nil, err
	}
	// The nonce is redeemed only once the request verifies, so unverified
	// requests leave nothing behind.
	if err := s.nonces.Check(req.Nonce); err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrNonce, err)
	}
	m := sv.Hist.Manifest
	// A first enrolment with a token may come from meshctl host enrol, which
	// has the public key only: the token is the proof there, and the key's
	// holder proves possession at every renewal.
	if len(req.Proof) > 0 || req.JoinToken == "" || req.Certificate != "" {
		if err := api.CheckPossession(s.possession, req.Nonce, req.PublicKey, req.Proof); err != nil {
			return nil, fmt.Errorf("%w: %v", api.ErrRefused, err)
		}
	}
	holder := ipam.Holder(req.PublicKey)

	verifying := time.Now()
	var id identity
	switch {
	case req.Certificate != "" && (req.JoinToken != "" || req.Evidence != nil):
		err = fmt.Errorf("%w: a renewal by certificate carries no token or evidence", api.ErrBadInput)
	case req.Certificate != "":
		id, err = renewal(ctx, sv, req.Certificate, req.PublicKey, holder, s.now())
	case req.JoinToken != "":
		id, err = s.joining(ctx, sv, req.JoinToken, holder)
	default:
		id, err = identify(ctx, s.verifier, m, req)
	}
	s.metrics.timed("verify", verifying)
	if err != nil {
		s.log.Warn("enrolment refused", "workload", workloadString(req.Workload), "err", err)
		return nil, err
	}
	switch err := s.nonces.Redeem(req.Nonce); {
	case errors.Is(err, nonce.ErrFull):
		return nil, fmt.Errorf("%w: %v", api.ErrNotReady, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", api.ErrNonce, err)
	}

	resp, err = s.respond(ctx, sv, id, req.PublicKey, holder)
	if err != nil {
		return nil, err
	}
	resp.Next = s.spare()
	return resp, nil
}

// respond issues the certificate of an admitted requester: not to a
// revoked key, and not past a token's uses.
func (s *Service) respond(ctx context.Context, sv Serving, id identity, publicKey []byte, holder string) (*api.EnrolResponse, error) {
	m := sv.Hist.Manifest
	now := s.now()
	if m.RevokedHolder(holder) {
		s.log.Warn("enrolment refused: revoked key", "workload", workloadString(id.workload), "holder", holder)
		return nil, fmt.Errorf("%w: a certificate for this key was revoked (manifest %s); the workload needs a new key", api.ErrRefused, m.Hash()[:12])
	}
	if id.token != nil {
		// Counted once the request has verified, so that only a key that
		// would be issued uses the token up.
		if err := tokenuse.Take(ctx, sv.Store, id.token.ID(), holder, id.token.Uses); errors.Is(err, tokenuse.ErrSpent) {
			s.log.Warn("enrolment refused", "token", id.token.ID(), "err", err)
			return nil, fmt.Errorf("%w: %v", api.ErrRefused, err)
		} else if err != nil {
			return nil, err
		}
	}
	crt, lease, err := s.issue(ctx, sv, id, publicKey, holder, now)
	if err != nil {
		return nil, err
	}
	certPEM, err := crt.MarshalPEM()
	if err != nil {
		return nil, err
	}
	addrs := crt.Networks()
	s.log.Info("certificate issued", "name", lease.Name, "role", id.role, "ips", addrs, "fingerprint", lease.Fingerprint, "workload", workloadString(id.workload))

	resp := &api.EnrolResponse{
		Name: lease.Name, Role: id.role, IP: addrs[0].String(), Groups: id.groups,
		NotAfter: crt.NotAfter(), Certificate: string(certPEM), CA: string(sv.Hist.TrustPEM()),
		Inbound: inbound(m, id), ReleaseToken: lease.releaseToken, Blocklist: blocklist(m, sv.Alloc, now), Head: sv.Hist.Head,
	}
	for _, a := range addrs {
		resp.IPs = append(resp.IPs, a.String())
	}
	for _, l := range m.Lighthouses {
		resp.Lighthouses = append(resp.Lighthouses, api.Lighthouse{OverlayIP: l.OverlayIP, Underlay: l.Underlay})
	}
	return resp, nil
}

// Admission is a requester whose evidence verified: what the manifest makes
// of it, for IssueFor. Only this package makes one.
type Admission struct {
	id   identity
	head string
}

// Role is the manifest role the evidence matched.
func (a Admission) Role() string { return a.id.role }

// Admit verifies evidence whose report data must be reportData, for a
// requester that speaks another protocol than sealmesh's (the KBS
// handshake, package kbs), and matches it to a role of the current
// manifest as Enrol would. w is the workload the evidence speaks for
// (bound into reportData by the caller's protocol), or none.
func (s *Service) Admit(ctx context.Context, ev api.Evidence, w api.Workload, reportData [64]byte) (Admission, error) {
	sv, err := s.serving()
	if err != nil {
		return Admission{}, err
	}
	id, err := identifyEvidence(ctx, s.verifier, sv.Hist.Manifest, ev, w, reportData)
	if err != nil {
		s.log.Warn("admission refused", "platform", ev.Platform, "err", err)
		return Admission{}, err
	}
	return Admission{id: id, head: sv.Hist.Head}, nil
}

// IssueFor issues a certificate for publicKey to an admitted requester,
// counted like an enrolment. An admission made under an older manifest
// is matched again by the current one's roles at the next Admit; here it
// must still name a role of the current manifest.
func (s *Service) IssueFor(ctx context.Context, a Admission, publicKey []byte) (resp *api.EnrolResponse, err error) {
	defer func(start time.Time) { s.metrics.observe(start, err) }(time.Now())
	if len(publicKey) != 32 {
		return nil, fmt.Errorf("%w: public key is %d bytes, want a 32-byte X25519 key", api.ErrBadInput, len(publicKey))
	}
	sv, err := s.serving()
	if err != nil {
		return nil, err
	}
	if _, ok := sv.Hist.Manifest.Role(a.id.role); !ok {
		return nil, fmt.Errorf("%w: role %q is no longer in the manifest; attest again", api.ErrRefused, a.id.role)
	}
	return s.respond(ctx, sv, a.id, publicKey, ipam.Holder(publicKey))
}

// ReleaseLease gives back what IssueFor issued (a credential refused after
// it was made), as Release would for its holder.
func (s *Service) ReleaseLease(ctx context.Context, e *api.EnrolResponse) error {
	crt, _, err := cert.UnmarshalCertificateFromPEM([]byte(e.Certificate))
	if err != nil {
		return err
	}
	fp, err := crt.Fingerprint()
	if err != nil {
		return err
	}
	return s.Release(ctx, &api.ReleaseRequest{Fingerprint: fp, ReleaseToken: e.ReleaseToken, IP: e.IP})
}

// issued is a lease with the release token only its holder gets.
type issued struct {
	ipam.Lease
	releaseToken string
}

// issue signs the certificate for the address the allocator chooses, and
// hands it out only once its lease is recorded (Issue signs again if another
// coordinator recorded that address first).
func (s *Service) issue(ctx context.Context, sv Serving, id identity, publicKey []byte, holder string, now time.Time) (cert.Certificate, issued, error) {
	m := sv.Hist.Manifest
	var crt cert.Certificate
	release := make([]byte, 32)
	rand.Read(release) // never fails (crypto/rand)
	releaseToken := hex.EncodeToString(release)
	recording := time.Now()
	lease, err := sv.Alloc.Issue(ctx, id.fixed, holder, id.role, now, func(ip netip.Addr) (ipam.Lease, error) {
		name := id.name
		if name == "" {
			name = id.role + "-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
		}
		var err error
		crt, err = sv.CA.Sign(issuer.Host{
			Name: name, Networks: m.HostAddrs(ip), Groups: id.groups, PublicKey: publicKey, NotAfter: now.Add(id.ttl),
		}, now)
		if err != nil {
			return ipam.Lease{}, err
		}
		fp, err := crt.Fingerprint()
		if err != nil {
			return ipam.Lease{}, err
		}
		return ipam.Lease{
			IP: ip, Name: name, Role: id.role, Groups: id.groups, Fingerprint: fp, Holder: holder,
			NotAfter: crt.NotAfter(), Workload: workloadString(id.workload), ReleaseHash: HashHex(releaseToken),
		}, nil
	})
	s.metrics.timed("record", recording)
	return crt, issued{Lease: lease, releaseToken: releaseToken}, err
}

// blocklist is every certificate the manifest revokes: those it names, and
// every live one issued to a revoked holder's key, renewed-away ones too (a
// revoked host kept its previous certificate, same key and address, for up
// to a third of the lifetime).
func blocklist(m *manifest.Manifest, alloc *ipam.Allocator, now time.Time) []string {
	out := slices.Concat(m.Blocklist(), alloc.HeldBy(m.RevokedHolders(), now), alloc.Superseded(now))
	slices.Sort(out)
	return slices.Compact(out)
}

// joining matches a join token to the manifest's: the role it admits (for a
// lighthouse, which one), nothing more. Failures are limited per source
// and logged by the token's ID at most, never the secret.
func (s *Service) joining(ctx context.Context, sv Serving, raw, holder string) (identity, error) {
	src := api.Source(ctx)
	if spent, wait := s.tokenFailures.Spent(src); spent {
		return identity{}, fmt.Errorf("%w: too many failed join-token attempts from %s, retry in %s", api.ErrRateLimited, src, wait.Round(time.Second))
	}
	id, err := admit(sv.Hist, raw, s.now())
	if err != nil {
		s.tokenFailures.Allow(src)
		s.log.Warn("join token refused", "source", src, "err", err)
	}
	return id, err
}

// admit is joining's check against the state.
func admit(h *history.State, raw string, now time.Time) (identity, error) {
	tok, err := jointoken.Parse(raw)
	if err != nil {
		return identity{}, fmt.Errorf("%w: %v", api.ErrRefused, err)
	}
	if tok.MeshID != h.MeshID() {
		return identity{}, fmt.Errorf("%w: the join token is for mesh %s; this coordinator serves %s", api.ErrRefused, tok.MeshID, h.MeshID())
	}
	m := h.Manifest
	// Every entry is compared, so the time taken says nothing about which
	// hashes share a prefix with the secret's.
	found := -1
	for i, t := range m.JoinTokens {
		if tok.Matches(t.SHA256) && found < 0 {
			found = i
		}
	}
	if found < 0 {
		return identity{}, fmt.Errorf("%w: the join token is not one of manifest %s (revoked, rotated, or never made)", api.ErrRefused, m.Hash()[:12])
	}
	t := m.JoinTokens[found]
	if t.Expires != nil && !now.Before(*t.Expires) {
		return identity{}, fmt.Errorf("%w: join token %s expired at %s", api.ErrRefused, t.ID(), t.Expires.UTC().Format(time.RFC3339))
	}
	id, err := tokenIdentity(m, t.Role, t.Name)
	id.token = &t
	return id, err
}

// tokenIdentity is what the manifest makes of a host of role (lighthouse or
// a joinToken role) called name.
func tokenIdentity(m *manifest.Manifest, role, name string) (identity, error) {
	if role == manifest.LighthouseRole {
		l, ok := m.LighthouseNamed(name)
		if !ok {
			return identity{}, fmt.Errorf("%w: lighthouse %q is not in manifest %s", api.ErrRefused, name, m.Hash()[:12])
		}
		return identity{name: l.Name, role: LighthouseGroup, groups: []string{LighthouseGroup},
			fixed: netip.MustParseAddr(l.OverlayIP), ttl: m.Lifetime()}, nil
	}
	r, ok := m.Role(role)
	if !ok || !r.JoinToken {
		return identity{}, fmt.Errorf("%w: role %q admits no host by token in manifest %s", api.ErrRefused, role, m.Hash()[:12])
	}
	return identity{name: name, role: r.Name, groups: append(slices.Clone(r.Groups), manifest.JoinTokenGroup), ttl: m.RoleLifetime(r)}, nil
}

// renewal admits the holder of a live certificate of this mesh's CA to renew
// it without a token: the certificate must be the current one of its lease
// (not renewed away long ago, superseded, released or revoked), and its role
// must still admit hosts by token. Identity comes from the manifest again.
func renewal(ctx context.Context, sv Serving, pemCert string, publicKey []byte, holder string, now time.Time) (identity, error) {
	crt, _, err := cert.UnmarshalCertificateFromPEM([]byte(pemCert))
	if err != nil {
		return identity{}, fmt.Errorf("%w: certificate: %v", api.ErrBadInput, err)
	}
	pool, err := cert.NewCAPoolFromPEM(sv.Hist.TrustPEM())
	if err != nil {
		return identity{}, err
	}
	switch {
	case crt.Expired(now):
		return identity{}, fmt.Errorf("%w: the certificate expired at %s; enrol again with a join token", api.ErrRefused, crt.NotAfter().UTC().Format(time.RFC3339))
	case subtle.ConstantTimeCompare(crt.PublicKey(), publicKey) != 1:
		return identity{}, fmt.Errorf("%w: the certificate is for another key", api.ErrRefused)
	case len(crt.Networks()) == 0:
		return identity{}, fmt.Errorf("%w: the certificate has no address", api.ErrRefused)
	}
	// Under a CA the mesh trusts now: the current generation's, or the
	// previous one's while a rotation lets hosts renew onto the new.
	if _, err := pool.VerifyCertificate(now, crt); err != nil {
		return identity{}, fmt.Errorf("%w: the certificate is not one of this mesh's trusted CAs: %v", api.ErrRefused, err)
	}
	fp, err := crt.Fingerprint()
	if err != nil {
		return identity{}, err
	}
	m := sv.Hist.Manifest
	if slices.Contains(blocklist(m, sv.Alloc, now), fp) {
		return identity{}, fmt.Errorf("%w: certificate %s is revoked", api.ErrRefused, fp[:12])
	}
	lease, ok, err := sv.Alloc.Current(ctx, crt.Networks()[0].Addr(), holder, fp, now)
	if err != nil {
		return identity{}, err
	}
	if !ok {
		return identity{}, fmt.Errorf("%w: certificate %s is no longer its address's (released, or its key replaced); enrol again with a join token", api.ErrRefused, fp[:12])
	}
	// The name the manifest gave it at its first enrolment (the lease is
	// MAC'd: the store cannot change it).
	return tokenIdentity(m, lease.Role, lease.Name)
}

// identify matches the request's evidence to exactly what the manifest
// allows. Nothing else in the request counts.
func identify(ctx context.Context, v *attest.Verifier, m *manifest.Manifest, req *api.EnrolRequest) (identity, error) {
	if req.Evidence == nil {
		return identity{}, fmt.Errorf("%w: no evidence, join token or certificate", api.ErrBadInput)
	}
	return identifyEvidence(ctx, v, m, *req.Evidence, req.Workload, attest.ReportData(req.Nonce, req.PublicKey, req.Binding()))
}

// identifyEvidence is identify for evidence bound to rd, for the workload w.
func identifyEvidence(ctx context.Context, v *attest.Verifier, m *manifest.Manifest, ev api.Evidence, w api.Workload, rd [64]byte) (identity, error) {
	claims, err := v.Verify(ctx, attest.Evidence{Platform: ev.Platform, Data: ev.Data}, rd)
	if err != nil {
		return identity{}, fmt.Errorf("%w: %v", api.ErrRefused, err)
	}
	if claims.Platform == attest.PlatformOIDC {
		// A token names its pod itself, and it is all a token proves: the
		// request's workload is a claim the token must back, never a
		// substitute for it (a dev token claiming prod/db-0 got prod's role).
		if err := sameWorkload(w, claims); err != nil {
			return identity{}, fmt.Errorf("%w: %v", api.ErrRefused, err)
		}
		w = api.Workload{Namespace: claims.Namespace, Name: claims.Pod, UID: claims.PodUID, ServiceAccount: claims.ServiceAccount}
	}
	// In node mode the node's evidence speaks for its pods; the pod it
	// names (bound into the evidence's report data) picks the role.
	r, err := attest.Match(claims, m.Roles, func(r manifest.Role) error {
		if !r.PodSelector.Matches(w.Namespace, w.ServiceAccount) {
			return fmt.Errorf("its podSelector does not select pod %s/%s (service account %q)", w.Namespace, w.Name, w.ServiceAccount)
		}
		return nil
	})
	if err != nil {
		return identity{}, fmt.Errorf("%w: %s evidence matches no role of manifest %s: %v", api.ErrRefused, claims.Platform, m.Hash()[:12], err)
	}
	groups := r.Groups
	if claims.Platform == attest.PlatformOIDC {
		// The weaker proof is visible to every peer's firewall.
		groups = append(slices.Clone(groups), attest.TokenGroup)
	}
	return identity{name: podName(w), role: r.Name, groups: groups, ttl: m.RoleLifetime(&r), workload: w}, nil
}

// podName is the certificate name of a pod as proven: <name>.<namespace>,
// which lighthouses answer DNS for (so a pod's name outlives its IP). ""
// (the role and IP name it then) for a workload that names no pod, or
// whose names are not DNS names. Names are for people and DNS; firewall
// rules go by groups.
func podName(w api.Workload) string {
	if !podNameRE.MatchString(w.Name) || !namespaceRE.MatchString(w.Namespace) || len(w.Name)+1+len(w.Namespace) > 253 {
		return ""
	}
	return w.Name + "." + w.Namespace
}

var (
	// A pod's name is a DNS subdomain; a namespace a DNS label.
	podNameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	namespaceRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// sameWorkload checks that a token enrolment claims no other pod than the
// token's own (fields the request leaves empty claim nothing).
func sameWorkload(w api.Workload, c *attest.Claims) error {
	for _, f := range []struct{ what, claimed, token string }{
		{"namespace", w.Namespace, c.Namespace}, {"pod", w.Name, c.Pod}, {"pod UID", w.UID, c.PodUID}, {"service account", w.ServiceAccount, c.ServiceAccount},
	} {
		if f.claimed != "" && f.claimed != f.token {
			return fmt.Errorf("the request claims %s %q, the service-account token is for %q", f.what, f.claimed, f.token)
		}
	}
	return nil
}

// inbound turns the manifest's rules between groups into the Nebula inbound
// rules of one host. Nebula's `groups` means all of them, so "from any of"
// becomes one rule per group.
func inbound(m *manifest.Manifest, id identity) []api.FirewallRule {
	if id.role == LighthouseGroup {
		return []api.FirewallRule{{Proto: "icmp", Port: "any"}}
	}
	var out []api.FirewallRule
	for _, r := range m.Firewall {
		if !slices.Contains(id.groups, r.To) {
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

// Release ends a lease (CNI DEL), for the holder of its release token.
func (s *Service) Release(ctx context.Context, req *api.ReleaseRequest) error {
	sv, err := s.serving()
	if err != nil {
		return err
	}
	if err := api.CheckHead(ctx, sv.Hist.Head); err != nil {
		return err
	}
	var ip netip.Addr
	if req.IP != "" {
		// The enrolment's IP as it was sent: an address with its prefix.
		p, err := netip.ParsePrefix(req.IP)
		if err != nil {
			return fmt.Errorf("%w: ip: %v", api.ErrBadInput, err)
		}
		ip = p.Addr()
	}
	switch err := sv.Alloc.Release(ctx, ip, req.Fingerprint, HashHex(req.ReleaseToken)); {
	case errors.Is(err, ipam.ErrReleaseRefused):
		return fmt.Errorf("%w: %v", api.ErrRefused, err)
	case err != nil:
		// The store's: a retry may succeed (500, not 403).
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// HashHex is the hex SHA-256 of s, as join tokens and release tokens are kept.
func HashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func workloadString(w api.Workload) string {
	if w.Namespace == "" && w.Name == "" {
		return ""
	}
	return w.Namespace + "/" + w.Name
}

// metrics are enrolment's Prometheus metrics: counts and timings only,
// nothing about who enrolled.
type metrics struct {
	enrolments *prometheus.CounterVec
	latency    prometheus.Histogram
	stages     *prometheus.HistogramVec
}

func newMetrics() metrics {
	m := metrics{
		enrolments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealmesh_coordinator_enrolments_total",
			Help: "Enrolment requests, by result: issued, refused (evidence or request not accepted), unavailable (not ready, retry elsewhere) or error.",
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sealmesh_coordinator_enrolment_seconds",
			Help:    "Time to answer an enrolment that issued a certificate (verification, address, signing, store).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		// Where an enrolment's time goes, so a slow answer can be put down
		// to the evidence's check or the store's write without a profiler.
		// Finer buckets than the total's around 1-30 ms, where both usually are.
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sealmesh_coordinator_enrolment_stage_seconds",
			Help: "Time in one stage of an enrolment: verify (the evidence's signature, certificate chain and the manifest's policy, or a join token) " +
				"or record (an address chosen, the certificate signed and its lease written to the store).",
			Buckets: []float64{.00025, .0005, .001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .25, .5, 1},
		}, []string{"stage"}),
	}
	// Every result is exported from the start (at 0), so that rates and
	// alerts on one see it before its first occurrence.
	for _, r := range []string{"issued", "refused", "unavailable", "error"} {
		m.enrolments.WithLabelValues(r)
	}
	return m
}

// Collectors are the service's metrics, for the coordinator's registry.
func (s *Service) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.enrolments, s.metrics.latency, s.metrics.stages}
}

// observe counts one enrolment's outcome.
func (m metrics) observe(start time.Time, err error) {
	switch {
	case err == nil:
		m.enrolments.WithLabelValues("issued").Inc()
		m.latency.Observe(time.Since(start).Seconds())
	case errors.Is(err, api.ErrRefused), errors.Is(err, api.ErrBadInput):
		m.enrolments.WithLabelValues("refused").Inc()
	case errors.Is(err, api.ErrNotReady):
		m.enrolments.WithLabelValues("unavailable").Inc()
	default:
		m.enrolments.WithLabelValues("error").Inc()
	}
}

// timed records the time since start in an enrolment's stage.
func (m metrics) timed(stage string, start time.Time) {
	m.stages.WithLabelValues(stage).Observe(time.Since(start).Seconds())
}
