package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
)

// The routes of the coordinator's API, shared by Handler and Client.
const (
	PathManifest    = "/v1/manifest"
	PathHistory     = "/v1/history"
	PathEnrol       = "/v1/enrol"
	PathNonce       = "/v1/nonce"
	PathRelease     = "/v1/release"
	PathUnlock      = "/v1/unlock"
	PathUnlockKey   = "/v1/unlock-key"
	PathRecover     = "/v1/recover"
	PathRecoveryKey = "/v1/recovery-key"
	PathSeedShares  = "/v1/seed-shares"
	PathPeerKeys    = "/v1/peer/keys"
	PathStatus      = "/v1/status"
	PathHosts       = "/v1/hosts"
	PathFreshness   = "/v1/freshness"
	// PathProposal collects owners' signatures of a manifest update
	// (POST), and shows one proposal (GET ?id=).
	PathProposal = "/v1/proposal"
	// PathAttest serves third-party verifiers that do not speak attested
	// TLS (AttestResponse), with ?nonce=HEX.
	PathAttest = "/.well-known/sealmesh/attest"
	// The probes, never rate-limited.
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// HeaderExpectedHead names the head a request expects (the one its sender
// verified, meshctl verify): a coordinator at another head answers 412
// (ErrHeadMismatch) and changes nothing, closing the window between
// verifying the mesh and acting on it.
const HeaderExpectedHead = "Sealmesh-Expected-Head"

// HeaderMeshID is on every answer of a coordinator that knows its mesh: the
// mesh's ID (the hash of its first transition). A client pinned to a mesh
// (Client.ExpectingMesh) checks it on every answer, the nonce's included,
// so it sends no evidence to a coordinator of another mesh.
const HeaderMeshID = "Sealmesh-Mesh-ID"

type expectedHeadKey struct{}

type sourceKey struct{}

// Source is the address of the request's peer (never a header a client
// sets), for what a server limits per source; "" outside a request.
func Source(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}

// ExpectedHead is the head the request carries in HeaderExpectedHead, if any.
func ExpectedHead(ctx context.Context) (string, bool) {
	h, ok := ctx.Value(expectedHeadKey{}).(string)
	return h, ok
}

// CheckHead is nil if the request expects no head or head itself, else
// ErrHeadMismatch naming both. A server checks it against the state it acts
// on, at the moment it acts.
func CheckHead(ctx context.Context, head string) error {
	if want, ok := ExpectedHead(ctx); ok && want != head {
		return fmt.Errorf("%w: the request expects head %s; this coordinator is at %s (verify the mesh again)", ErrHeadMismatch, want, head)
	}
	return nil
}

// Server is what answers the API: the coordinator.
type Server interface {
	SetManifest(context.Context, *ManifestRequest) (*ManifestResponse, error)
	Manifest(context.Context) (*ManifestInfo, error)
	History(context.Context) ([]HistoryEntry, error)
	Nonce(context.Context) (*NonceResponse, error)
	Enrol(context.Context, *EnrolRequest) (*EnrolResponse, error)
	Release(context.Context, *ReleaseRequest) error
	Unlock(context.Context, *UnlockRequest) (*Status, error)
	RotateUnlockKey(context.Context, *UnlockRequest) (*UnlockKeyResponse, error)
	Recover(context.Context, *RecoverRequest) (*ManifestResponse, error)
	RecoveryKey(context.Context) (*RecoveryKey, error)
	SeedShares(context.Context, *OwnerProof) (*SeedSharesResponse, error)
	PeerKeys(context.Context, *PeerKeysRequest) (*PeerKeysResponse, error)
	PublicStatus(context.Context) (*Status, error)
	Attest(ctx context.Context, nonce []byte) (*AttestResponse, error)
	Hosts(context.Context, *HostsRequest) (*Status, error)
	ConfirmFresh(context.Context, *OwnerProof) (*Status, error)
	Propose(context.Context, *ProposalRequest) (*ProposalResponse, error)
	Proposal(ctx context.Context, id string) (*ProposalResponse, error)
	// Ready and State answer /readyz; they must not block.
	Ready() bool
	State() string
	// MeshID is the mesh served ("" if none yet), for HeaderMeshID.
	MeshID() string
}

// Route is one call of the API.
type Route struct {
	Method, Path string
	handler      func(Server) http.HandlerFunc
}

// Routes is the API, as docs/protocol.md describes it.
var Routes = []Route{
	{http.MethodPost, PathManifest, func(s Server) http.HandlerFunc { return post(s.SetManifest) }},
	{http.MethodGet, PathManifest, func(s Server) http.HandlerFunc { return get(s.Manifest) }},
	{http.MethodGet, PathHistory, func(s Server) http.HandlerFunc { return get(s.History) }},
	{http.MethodPost, PathNonce, func(s Server) http.HandlerFunc { return get(s.Nonce) }},
	{http.MethodPost, PathEnrol, func(s Server) http.HandlerFunc { return post(s.Enrol) }},
	{http.MethodPost, PathRelease, func(s Server) http.HandlerFunc {
		return post(func(ctx context.Context, r *ReleaseRequest) (struct{}, error) { return struct{}{}, s.Release(ctx, r) })
	}},
	{http.MethodPost, PathUnlock, func(s Server) http.HandlerFunc { return post(s.Unlock) }},
	{http.MethodPost, PathUnlockKey, func(s Server) http.HandlerFunc { return post(s.RotateUnlockKey) }},
	{http.MethodPost, PathRecover, func(s Server) http.HandlerFunc { return post(s.Recover) }},
	{http.MethodGet, PathRecoveryKey, func(s Server) http.HandlerFunc { return get(s.RecoveryKey) }},
	{http.MethodPost, PathSeedShares, func(s Server) http.HandlerFunc { return post(s.SeedShares) }},
	{http.MethodPost, PathPeerKeys, func(s Server) http.HandlerFunc { return post(s.PeerKeys) }},
	{http.MethodGet, PathStatus, func(s Server) http.HandlerFunc { return get(s.PublicStatus) }},
	{http.MethodPost, PathHosts, func(s Server) http.HandlerFunc { return post(s.Hosts) }},
	{http.MethodPost, PathFreshness, func(s Server) http.HandlerFunc { return post(s.ConfirmFresh) }},
	{http.MethodPost, PathProposal, func(s Server) http.HandlerFunc { return post(s.Propose) }},
	{http.MethodGet, PathProposal, func(s Server) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			resp, err := s.Proposal(r.Context(), r.URL.Query().Get("id"))
			reply(w, resp, err)
		}
	}},
	{http.MethodGet, PathAttest, func(s Server) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			nonce, err := hex.DecodeString(r.URL.Query().Get("nonce"))
			if err != nil || len(nonce) < 16 || len(nonce) > 64 {
				WriteError(w, fmt.Errorf("%w: nonce: want 16 to 64 bytes as hex", ErrBadInput))
				return
			}
			resp, err := s.Attest(r.Context(), nonce)
			reply(w, resp, err)
		}
	}},
}

// maxBody bounds request bodies; evidence with its certificate chain is a few KiB.
const maxBody = 1 << 20

// Handler serves the API from s. limit wraps the calls (not the probes: a
// kubelet behind the same address as a busy agent must still see the
// coordinator); nil: none.
func Handler(s Server, limit func(http.Handler) http.Handler) http.Handler {
	mux := http.NewServeMux()
	for _, r := range Routes {
		h := r.handler(s)
		mux.HandleFunc(r.Method+" "+r.Path, func(w http.ResponseWriter, req *http.Request) {
			if id := s.MeshID(); id != "" {
				w.Header().Set(HeaderMeshID, id)
			}
			ctx := context.WithValue(req.Context(), sourceKey{}, PeerAddr(req))
			if head := req.Header.Get(HeaderExpectedHead); head != "" {
				ctx = context.WithValue(ctx, expectedHeadKey{}, head)
			}
			req = req.WithContext(ctx)
			h(w, req)
		})
	}
	probes := http.NewServeMux()
	probes.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	probes.HandleFunc("GET "+PathReadyz, func(w http.ResponseWriter, r *http.Request) {
		if !s.Ready() {
			http.Error(w, s.State(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	var calls http.Handler = mux
	if limit != nil {
		calls = limit(mux)
	}
	probes.Handle("/", calls)
	return probes
}

// PeerAddr is the request's peer IP address (never a header a client sets).
func PeerAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// post serves a call whose request is a JSON body.
func post[Req, Resp any](f func(context.Context, *Req) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := decode(w, r, &req); err != nil {
			WriteError(w, err)
			return
		}
		resp, err := f(r.Context(), &req)
		reply(w, resp, err)
	}
}

// get serves a call without a request body.
func get[Resp any](f func(context.Context) (Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		resp, err := f(r.Context())
		reply(w, resp, err)
	}
}

// decode reads a JSON body strictly: a field the protocol does not have (a
// requested name, IP or groups, say) is an error, not silently dropped.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.Join(ErrBadInput, err)
	}
	return nil
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		WriteError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// WriteError answers with err's fault: its HTTP status, code and message.
func WriteError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(FaultOf(err).Status)
	json.NewEncoder(w).Encode(ErrorBody(err))
}
