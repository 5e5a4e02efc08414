package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Client talks to the coordinators of one mesh. It knows one or several
// (a comma-separated list of URLs; a host name with several addresses, such as a
// headless Service, counts as one coordinator per address) and moves to the
// next when one cannot be reached or is not ready.
type Client struct {
	bases []string
	http  *http.Client
	mu    sync.Mutex
	good  string // the last coordinator that answered
	// one: a single coordinator's client from Coordinators, its URL already
	// expanded (no name lookup per call).
	one bool
	// spares are shared with the clients Coordinators hands out.
	spares *spares
	// Resolver looks up coordinators' names (net.DefaultResolver if nil).
	Resolver *net.Resolver
	// expectedHead, when set, goes with every request (HeaderExpectedHead).
	expectedHead string
	// mesh, when set, is the only mesh whose coordinators' answers are
	// taken (HeaderMeshID).
	mesh string
}

// ErrWrongMesh: a coordinator answered for another mesh than the one the
// client is pinned to, or for none. Final: no other coordinator is asked.
var ErrWrongMesh = errors.New("coordinator of another mesh")

// ExpectingMesh is a client that takes answers only from coordinators of
// the mesh id (HeaderMeshID): any other answer, a nonce's included, is
// ErrWrongMesh, so nothing more is sent to such a coordinator.
func (c *Client) ExpectingMesh(id string) *Client {
	n := c.clone()
	n.mesh = id
	return n
}

func (c *Client) clone() *Client {
	return &Client{bases: c.bases, http: c.http, one: c.one, spares: c.spares, Resolver: c.Resolver, expectedHead: c.expectedHead, mesh: c.mesh}
}

// ExpectingHead is a client whose every request carries head as the one the
// caller verified (HeaderExpectedHead): a coordinator at another head answers
// ErrHeadMismatch and does nothing.
func (c *Client) ExpectingHead(head string) *Client {
	n := c.clone()
	n.expectedHead = head
	return n
}

// dialTimeout bounds connecting to one coordinator, so an unreachable one
// (partitioned, its node gone) costs seconds before the next is tried.
const dialTimeout = 3 * time.Second

// NewClient returns a client for the coordinators at base, e.g.
// http://10.0.0.1:7080 or https://a:7080,https://b:7080. rt, when not nil, makes
// its connections (attested TLS: package attested).
func NewClient(base string, rt ...http.RoundTripper) *Client {
	c := &http.Client{Timeout: 30 * time.Second}
	if len(rt) > 0 && rt[0] != nil {
		c.Transport = rt[0]
	} else {
		c.Transport = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConnsPerHost: 4,
		}
	}
	var bases []string
	for _, b := range strings.Split(base, ",") {
		if b = strings.TrimRight(strings.TrimSpace(b), "/"); b != "" {
			bases = append(bases, b)
		}
	}
	return &Client{bases: bases, http: c, spares: &spares{m: map[string][]spare{}}}
}

// Coordinators returns one client per coordinator, the last one that answered
// first, for calls that must stay on one coordinator (a nonce is good only
// where it was issued).
func (c *Client) Coordinators(ctx context.Context) []*Client {
	if c.one {
		return []*Client{c}
	}
	var urls []string
	for _, b := range c.bases {
		urls = append(urls, expand(ctx, c.Resolver, b)...)
	}
	c.mu.Lock()
	good := c.good
	c.mu.Unlock()
	out := make([]*Client, 0, len(urls))
	for _, u := range urls {
		one := &Client{bases: []string{u}, http: c.http, one: true, spares: c.spares, expectedHead: c.expectedHead, mesh: c.mesh}
		if u == good {
			out = append([]*Client{one}, out...)
		} else {
			out = append(out, one)
		}
	}
	return out
}

// URL is the coordinator a single-coordinator client talks to.
func (c *Client) URL() string { return strings.Join(c.bases, ",") }

// expand turns a URL whose host name has several addresses into one URL per
// address; others stay as they are.
func expand(ctx context.Context, r *net.Resolver, base string) []string {
	u, err := url.Parse(base)
	if err != nil || net.ParseIP(u.Hostname()) != nil || u.Hostname() == "" {
		return []string{base}
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupHost(ctx, u.Hostname())
	if err != nil || len(addrs) < 2 {
		return []string{base}
	}
	slices.Sort(addrs)
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		v := *u
		v.Host = net.JoinHostPort(a, u.Port())
		if u.Port() == "" {
			v.Host = a
			if strings.Contains(a, ":") {
				v.Host = "[" + a + "]"
			}
		}
		out = append(out, v.String())
	}
	return out
}

// Retryable reports whether err may succeed at another coordinator or later:
// one that could not be reached, was not ready, failed inside, limited this
// client's rate, or no longer knows the nonce it issued (it restarted). A
// refusal of the evidence or a bad request is final.
func Retryable(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) {
		return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrWrongMesh)
	}
	switch {
	case se.Status >= 500, se.Status == http.StatusTooManyRequests:
		return true
	case NonceRefused(err):
		return true
	}
	return false
}

// NonceRefused reports whether a coordinator refused a request for its nonce
// (unknown, used or expired), not for what the request proved.
func NonceRefused(err error) bool {
	return errors.Is(err, ErrNonce)
}

// SetManifest sets or replaces the manifest.
func (c *Client) SetManifest(ctx context.Context, req *ManifestRequest) (*ManifestResponse, error) {
	var r ManifestResponse
	return &r, c.post(ctx, PathManifest, req, &r)
}

// Propose proposes or approves a manifest update (PathProposal).
func (c *Client) Propose(ctx context.Context, req *ProposalRequest) (*ProposalResponse, error) {
	var out ProposalResponse
	return &out, c.post(ctx, PathProposal, req, &out)
}

// Proposal returns the proposal id.
func (c *Client) Proposal(ctx context.Context, id string) (*ProposalResponse, error) {
	var out ProposalResponse
	return &out, c.do(ctx, http.MethodGet, PathProposal+"?id="+url.QueryEscape(id), nil, &out)
}

// Manifest returns the current manifest (503 before the first).
func (c *Client) Manifest(ctx context.Context) (*ManifestInfo, error) {
	var m ManifestInfo
	return &m, c.do(ctx, http.MethodGet, PathManifest, nil, &m)
}

// History returns every transition, oldest first.
func (c *Client) History(ctx context.Context) ([]HistoryEntry, error) {
	var h []HistoryEntry
	return h, c.do(ctx, http.MethodGet, PathHistory, nil, &h)
}

// Unlock hands a locked coordinator its unlock key.
func (c *Client) Unlock(ctx context.Context, key string) (*Status, error) {
	var s Status
	return &s, c.post(ctx, PathUnlock, &UnlockRequest{UnlockKey: key}, &s)
}

// RotateUnlockKey replaces the unlock key; the current one authorises it.
func (c *Client) RotateUnlockKey(ctx context.Context, current string) (string, error) {
	var r UnlockKeyResponse
	err := c.post(ctx, PathUnlockKey, &UnlockRequest{UnlockKey: current}, &r)
	return r.UnlockKey, err
}

// PeerKeys asks a ready coordinator for the seed (coordinator to coordinator).
func (c *Client) PeerKeys(ctx context.Context, req *PeerKeysRequest) (*PeerKeysResponse, error) {
	var r PeerKeysResponse
	return &r, c.post(ctx, PathPeerKeys, req, &r)
}

// RecoveryKey returns the key to encrypt a seed to.
func (c *Client) RecoveryKey(ctx context.Context) ([]byte, error) {
	var r RecoveryKey
	err := c.do(ctx, http.MethodGet, PathRecoveryKey, nil, &r)
	return r.PublicKey, err
}

// Recover hands a coordinator without secrets the encrypted seed.
func (c *Client) Recover(ctx context.Context, req *RecoverRequest) (*ManifestResponse, error) {
	var r ManifestResponse
	return &r, c.post(ctx, PathRecover, req, &r)
}

// SeedShares fetches the encrypted seed shares kept in the store; proof
// shows the caller holds an owner key (PurposeSeedShares).
func (c *Client) SeedShares(ctx context.Context, proof *OwnerProof) (*SeedSharesResponse, error) {
	var r SeedSharesResponse
	return &r, c.post(ctx, PathSeedShares, proof, &r)
}

func (c *Client) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, b, out)
}

// Nonce asks for a fresh single-use nonce.
func (c *Client) Nonce(ctx context.Context) (*NonceResponse, error) {
	var n NonceResponse
	return &n, c.do(ctx, http.MethodPost, PathNonce, nil, &n)
}

// Enrol asks for a certificate. The nonce the answer carries for the next
// enrolment is kept for EnrolNonce (by a client for one coordinator, as
// Coordinators hands out), not passed on.
func (c *Client) Enrol(ctx context.Context, req *EnrolRequest) (*EnrolResponse, error) {
	var r EnrolResponse
	if err := c.post(ctx, PathEnrol, req, &r); err != nil {
		return &r, err
	}
	if r.Next != nil && c.one {
		c.spares.put(c.bases[0], *r.Next)
	}
	r.Next = nil
	return &r, nil
}

// EnrolNonce returns a nonce for an enrolment at this coordinator: one that
// an earlier answer of it carried, if one is still fresh (spare is true:
// the coordinator may have forgotten it since, by restarting; ask Nonce
// then), else a new one from Nonce.
func (c *Client) EnrolNonce(ctx context.Context) (n *NonceResponse, spare bool, err error) {
	if c.one {
		if s, ok := c.spares.take(c.bases[0]); ok {
			return &s, true, nil
		}
	}
	n, err = c.Nonce(ctx)
	return n, false, err
}

// SpareNonceAge is how long a client keeps a nonce an answer carried,
// counted from its arrival on the client's own clock (so clock skew does not
// matter); a coordinator's nonces live longer than this.
const SpareNonceAge = 30 * time.Second

// maxSpares bounds the nonces kept per coordinator: as many as a busy agent
// has enrolments under way there at once.
const maxSpares = 64

type spares struct {
	mu sync.Mutex
	m  map[string][]spare
}

type spare struct {
	n     NonceResponse
	until time.Time
}

func (s *spares) put(url string, n NonceResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m[url]) < maxSpares {
		s.m[url] = append(s.m[url], spare{n: n, until: time.Now().Add(SpareNonceAge)})
	}
}

// take returns the oldest fresh spare for url, dropping the stale ones
// (they arrived in order, so those are the oldest).
func (s *spares) take(url string) (NonceResponse, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.m[url]
	now := time.Now()
	for len(l) > 0 && !now.Before(l[0].until) {
		l = l[1:]
	}
	if len(l) == 0 {
		delete(s.m, url)
		return NonceResponse{}, false
	}
	s.m[url] = l[1:]
	return l[0].n, true
}

// ConfirmFresh sends an owner's statement that the coordinator's head is the
// newest it knows (api.PurposeFresh).
func (c *Client) ConfirmFresh(ctx context.Context, proof *OwnerProof) (*Status, error) {
	var s Status
	return &s, c.post(ctx, PathFreshness, proof, &s)
}

// Release gives an IP back.
func (c *Client) Release(ctx context.Context, req *ReleaseRequest) error {
	return c.post(ctx, PathRelease, req, nil)
}

// Status returns the coordinator's view of the mesh.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, http.MethodGet, PathStatus, nil, &s)
}

// Hosts is Status with the host list (all live hosts, or those host names),
// for an owner (proof) or an attested coordinator (nil proof).
func (c *Client) Hosts(ctx context.Context, proof *OwnerProof, host string) (*Status, error) {
	var s Status
	return &s, c.post(ctx, PathHosts, &HostsRequest{Proof: proof, Host: host}, &s)
}

// do makes the call at each coordinator in turn until one answers with
// something other than a retryable failure.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	all := c.Coordinators(ctx)
	var errs []error
	for _, one := range all {
		err := one.doOne(ctx, method, path, body, out)
		if err == nil {
			if len(c.bases) > 1 || len(all) > 1 {
				c.mu.Lock()
				c.good = one.bases[0]
				c.mu.Unlock()
			}
			return nil
		}
		if !Retryable(err) || ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

func (c *Client) doOne(ctx context.Context, method, path string, body []byte, out any) error {
	base := c.bases[0]
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("coordinator %s: %w", base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.expectedHead != "" {
		req.Header.Set(HeaderExpectedHead, c.expectedHead)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("coordinator %s: %w", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("coordinator %s%s: read: %w", base, path, err)
	}
	// Go's TLS server answers a plain-HTTP request so; without this the
	// user sees a bare 400 Bad Request.
	if resp.StatusCode == http.StatusBadRequest && bytes.Contains(b, []byte("HTTP request to an HTTPS server")) {
		return &StatusError{Status: resp.StatusCode, Msg: fmt.Sprintf("coordinator %s: this coordinator speaks attested TLS; use https:// and --coordinator-policy-file", base)}
	}
	if got := resp.Header.Get(HeaderMeshID); c.mesh != "" && got != c.mesh {
		if got == "" {
			got = "none"
		}
		return fmt.Errorf("coordinator %s%s: %w: it serves mesh %s, this client is pinned to %s", base, path, ErrWrongMesh, got, c.mesh)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return &StatusError{Status: resp.StatusCode, Code: e.Code, Msg: fmt.Sprintf("coordinator %s%s: %s", base, path, e.Error)}
		}
		return &StatusError{Status: resp.StatusCode, Msg: fmt.Sprintf("coordinator %s%s: %s", base, path, resp.Status)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("coordinator %s%s: bad response: %w", base, path, err)
	}
	return nil
}
