// Package api is the coordinator's protocol, shared by the coordinator, the agent,
// the lighthouse and meshctl: JSON over HTTP. docs/protocol.md describes it.
//
//	POST /v1/manifest     body: ManifestRequest    → ManifestResponse
//	GET  /v1/manifest                              → ManifestInfo
//	GET  /v1/history                               → []HistoryEntry
//	POST /v1/nonce                                 → NonceResponse
//	POST /v1/enrol        body: EnrolRequest       → EnrolResponse
//	POST /v1/release      body: ReleaseRequest     → {}
//	POST /v1/unlock       body: UnlockRequest      → Status
//	POST /v1/unlock-key   body: UnlockRequest      → UnlockKeyResponse (rotates it)
//	GET  /v1/recovery-key                          → RecoveryKey
//	POST /v1/recover      body: RecoverRequest     → ManifestResponse
//	POST /v1/seed-shares  body: OwnerProof         → SeedSharesResponse
//	GET  /v1/status                                → Status (host count, no host list)
//	POST /v1/hosts        body: HostsRequest       → Status (with the hosts)
//	GET  /healthz, /readyz
//
// Errors come back as a non-2xx status with an Error body.
package api

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
	"time"
)

// NonceResponse carries a single-use nonce the next enrolment must commit to.
type NonceResponse struct {
	Nonce   []byte    `json:"nonce"`
	Expires time.Time `json:"expires"`
	// PossessionKey is the coordinator's X25519 key for the enrolment's
	// proof of possession (Prove); like the nonce, good only at the
	// coordinator process that gave it.
	PossessionKey []byte `json:"possessionKey"`
}

// Evidence is TEE evidence: a platform name and that platform's bytes.
type Evidence struct {
	Platform string `json:"platform"`
	Data     []byte `json:"data"`
}

// Workload is what a requester says it runs. It is recorded and shown, never used
// to choose identity: the role comes from the evidence.
type Workload struct {
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	UID         string `json:"uid,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	// ServiceAccount is the pod's, as the node agent read it from the
	// Kubernetes API.
	ServiceAccount string `json:"serviceAccount,omitempty"`
}

// EnrolRequest asks for a certificate for PublicKey. A workload proves itself
// with Evidence whose report data is attest.ReportData(Nonce, PublicKey,
// Binding()); a lighthouse or a host of a joinToken role with its JoinToken
// (package jointoken) the first time, and with its current Certificate
// (for the same key, whose possession Proof shows) to renew. There is no
// field for the name, IP or groups: those are assigned (invariant C).
type EnrolRequest struct {
	Nonce     []byte    `json:"nonce"`
	PublicKey []byte    `json:"publicKey"`
	Evidence  *Evidence `json:"evidence,omitempty"`
	JoinToken string    `json:"joinToken,omitempty"`
	// Certificate is the requester's current certificate (PEM), to renew
	// without a token: only for lighthouses and joinToken roles.
	Certificate string   `json:"certificate,omitempty"`
	Workload    Workload `json:"workload"`
	// Proof shows the requester holds PublicKey's private key (Prove).
	// A first enrolment with a join token may leave it out (meshctl host
	// enrol has the public key only); every other enrolment needs it.
	Proof []byte `json:"proof,omitempty"`
}

// Binding is the part of the request, besides nonce and key, that the evidence
// commits to, so that none of it can be swapped in transit.
func (r *EnrolRequest) Binding() []byte {
	b, _ := json.Marshal(r.Workload)
	return b
}

// EnrolResponse is everything a host needs to run Nebula.
type EnrolResponse struct {
	Name        string         `json:"name"`
	Role        string         `json:"role"`
	IP          string         `json:"ip"`  // in the first network, with its prefix length, e.g. 10.42.0.5/16
	IPs         []string       `json:"ips"` // in every network: IP first, then e.g. fd42::5/64
	Groups      []string       `json:"groups"`
	NotAfter    time.Time      `json:"notAfter"`
	Certificate string         `json:"certificate"` // PEM
	CA          string         `json:"ca"`          // PEM
	Lighthouses []Lighthouse   `json:"lighthouses"`
	Inbound     []FirewallRule `json:"inbound"`
	// Blocklist are the fingerprints of revoked certificates: refuse them and
	// close their tunnels.
	Blocklist []string `json:"blocklist,omitempty"`
	// Head is the manifest transition this answer was made from: a host whose
	// configuration comes from an older one enrols again for the new rules.
	Head string `json:"head,omitempty"`
	// ReleaseToken lets the holder give the IP back before the certificate
	// expires (CNI DEL). Only its hash is stored.
	ReleaseToken string `json:"releaseToken,omitempty"`
	// Next is a nonce for the requester's next enrolment at this coordinator,
	// so that it need not ask for one (Client.EnrolNonce keeps it).
	Next *NonceResponse `json:"next,omitempty"`
}

// Lighthouse is where a host finds the others.
type Lighthouse struct {
	OverlayIP string `json:"overlayIP"`
	Underlay  string `json:"underlay"`
}

// FirewallRule is one Nebula inbound rule: from hosts in Group (or any host when
// Group is empty), on Proto and Port.
type FirewallRule struct {
	Proto string `json:"proto"`
	Port  string `json:"port"`
	Group string `json:"group,omitempty"`
}

// ReleaseRequest gives an IP back.
type ReleaseRequest struct {
	Fingerprint  string `json:"fingerprint"`
	ReleaseToken string `json:"releaseToken"`
	// IP is the enrolment's IP (address/prefix, as EnrolResponse.IP), so any
	// coordinator finds the lease in the store, not only the one that issued it.
	IP string `json:"ip,omitempty"`
}

// ManifestRequest sets the first manifest or replaces the current one. The owner
// signs history.UpdateDigest(Parent, hash of the parsed manifest) with an Ed25519
// key listed in the current manifest (for the first, in the manifest itself).
type ManifestRequest struct {
	Manifest  []byte `json:"manifest"` // JSON or YAML
	Parent    string `json:"parent"`   // head transition it replaces; "" for the first
	SignerKey []byte `json:"signerKey"`
	Signature []byte `json:"signature"`
	// Approvals are other owners' signatures of the same update, where the
	// current manifest's updateThreshold asks for several (usually
	// collected by POST /v1/proposal instead).
	Approvals []Approval `json:"approvals,omitempty"`
	// Unrevoke names (by fingerprint) each revocation of the current
	// manifest that this one lifts: an update that drops a revocation
	// without naming it is refused (ErrRevocationDropped), so that
	// re-applying an old file cannot un-revoke by accident.
	Unrevoke []string `json:"unrevoke,omitempty"`
}

// ManifestResponse reports the new head. The first manifest also returns the
// unlock key (when the coordinator seals with one), which only its caller
// ever sees, and the seed encrypted to each seed-share owner (also kept in the
// store: POST /v1/seed-shares).
type ManifestResponse struct {
	Status     *Status     `json:"status"`
	UnlockKey  string      `json:"unlockKey,omitempty"`
	SeedShares []SeedShare `json:"seedShares,omitempty"`
	// Replayed: this signed request was applied already (its answer was
	// lost, or it was retried at another coordinator); nothing changed.
	// The signed request is its own idempotency key. A replayed create
	// carries the seed shares again but never the unlock key: the request
	// is in the store, for anyone to replay.
	Replayed bool `json:"replayed,omitempty"`
	// Unchanged: the manifest is the current one; no new generation.
	Unchanged bool `json:"unchanged,omitempty"`
	// SharesNeeded: a recovery from a k-of-n split seed took this share
	// and waits for this many more (from other seed-share owners).
	SharesNeeded int `json:"sharesNeeded,omitempty"`
}

// Approval is one owner's signature of a manifest update
// (history.UpdateDigest of its parent and the manifest's hash).
type Approval struct {
	SignerKey []byte `json:"signerKey"`
	Signature []byte `json:"signature"`
}

// ProposalRequest proposes moving the manifest from Parent (the current
// head) to Manifest, or approves that proposal: one owner's signature of
// the update. The proposal is kept in the store, named by the update's
// digest, until enough owners signed it (the current manifest's
// updateThreshold); then it is applied.
type ProposalRequest struct {
	Manifest  []byte   `json:"manifest"`
	Parent    string   `json:"parent"`
	SignerKey []byte   `json:"signerKey"`
	Signature []byte   `json:"signature"`
	Unrevoke  []string `json:"unrevoke,omitempty"`
}

// ProposalResponse is a proposal and who signed it so far; Applied once
// enough owners did.
type ProposalResponse struct {
	ID         string            `json:"id"`
	Parent     string            `json:"parent"`
	Hash       string            `json:"hash"`
	Manifest   []byte            `json:"manifest"` // canonical JSON
	ApprovedBy []string          `json:"approvedBy"`
	Needed     int               `json:"needed"`
	Applied    *ManifestResponse `json:"applied,omitempty"`
}

// SeedSharesResponse carries the seed shares made when the mesh was created.
type SeedSharesResponse struct {
	SeedShares []SeedShare `json:"seedShares"`
	// Sharing, for a k-of-n split seed, is its public part: the threshold,
	// the commitments each share is checked against and the wrapped seed
	// (package shamir).
	Sharing *SeedSharing `json:"sharing,omitempty"`
}

// SeedSharing is the public part of a k-of-n split seed.
type SeedSharing struct {
	Threshold  int    `json:"threshold"`
	Commitment []byte `json:"commitment"`
	Wrapped    []byte `json:"wrapped"`
}

// SeedShare is the seed, or for a split seed one share of it, encrypted
// (HPKE) to one seed-share owner.
type SeedShare struct {
	Owner string `json:"owner"`
	Share []byte `json:"share"`
}

// ManifestInfo is the current manifest.
type ManifestInfo struct {
	Generation uint64 `json:"generation"`
	Head       string `json:"head"`
	Hash       string `json:"hash"`
	Manifest   []byte `json:"manifest"` // canonical JSON
	// CA is the mesh's CA certificate (PEM); the head transition names its
	// hash.
	CA string `json:"ca,omitempty"`
}

// HistoryEntry is one transition with its manifest.
type HistoryEntry struct {
	Generation uint64    `json:"generation"`
	Head       string    `json:"head"`
	Time       time.Time `json:"time"`
	Signer     string    `json:"signer"`
	Hash       string    `json:"hash"`
	Manifest   []byte    `json:"manifest"`
	// Transition is the transition as stored: its hash is Head, and it
	// names its parent, its manifest's and CA's hashes, the signer's key
	// and signature, so that a client re-checks the whole history
	// (history.VerifyChain) without trusting the coordinator.
	Transition json.RawMessage `json:"transition,omitempty"`
}

// UnlockRequest carries an unlock key.
type UnlockRequest struct {
	UnlockKey string `json:"unlockKey"`
}

// UnlockKeyResponse carries a new unlock key after rotation.
type UnlockKeyResponse struct {
	UnlockKey string `json:"unlockKey"`
}

// RecoveryKey is the X25519 key a coordinator without secrets takes a seed under.
type RecoveryKey struct {
	PublicKey []byte `json:"publicKey"`
}

// RecoverRequest hands a coordinator the seed, encrypted (HPKE) to its recovery
// key. Force replaces local sealed state the coordinator cannot open.
type RecoverRequest struct {
	Seed []byte `json:"seed,omitempty"`
	// Share is one seed-share owner's share of a k-of-n split seed (the
	// manifest's seedShareThreshold), sealed like Seed: the coordinator
	// keeps shares until it has k (ManifestResponse.SharesNeeded).
	Share []byte `json:"share,omitempty"`
	Force bool   `json:"force,omitempty"`
}

// PeerKeysRequest asks a ready coordinator for the mesh's seed. It is sent over
// attested TLS in which the requester attests too (its client certificate), so
// the serving coordinator knows who is on the other end of the connection that
// carries the one-time X25519 key the seed is encrypted to.
type PeerKeysRequest struct {
	PublicKey []byte `json:"publicKey"`
}

// PeerKeysResponse carries the seed, HPKE-encrypted to the request's key.
type PeerKeysResponse struct {
	Seed       []byte `json:"seed"`
	Generation uint64 `json:"generation"`
	Head       string `json:"head"`
	// Unconfirmed: the serving peer restarted from its sealed state and no
	// one has confirmed its head is the newest; the recovering coordinator
	// inherits that, so recovering from it confirms nothing.
	Unconfirmed bool `json:"unconfirmed,omitempty"`
}

// Coordinator states.
const (
	// StateStarting: the coordinator has not read its sealed state and the
	// store yet (it retries a store it cannot reach).
	StateStarting = "starting"
	StateWaiting  = "waiting-for-manifest"
	StateReady    = "ready"
	// StateLocked: sealed state is here; waiting for meshctl unlock.
	StateLocked = "locked"
	// StateRecovering: the store holds a mesh but this coordinator has no
	// sealed state; waiting for meshctl recover (or a peer).
	StateRecovering = "recovering"
	// StateUnconfirmed: restarted from its sealed state with peers to ask,
	// it verified the store's history but does not serve until an attested
	// peer confirms that history is the newest (or an owner does, POST
	// /v1/freshness): a store and a sealed state rolled back together
	// verify, and only someone who saw a newer head can tell.
	StateUnconfirmed = "unconfirmed"
	// StateDegraded: ready, but the store could not be read at the last
	// check (an I/O error, not a verification failure); the coordinator
	// serves the state it verified and checks again.
	StateDegraded = "degraded"
	// StateFailed: the store does not verify (tampered or rolled back); the
	// coordinator serves nothing until an operator looks.
	StateFailed = "failed"
)

// Status is the coordinator's view of the mesh.
type Status struct {
	// FreshnessUnconfirmed: this coordinator serves a history no attested
	// peer or owner has confirmed as the newest since it restarted from its
	// sealed state (a lone coordinator; meshctl confirm).
	FreshnessUnconfirmed bool `json:"freshnessUnconfirmed,omitempty"`
	// MeshID is the mesh this coordinator serves (the hash of its first
	// transition); MeshFirstUse: it was taken from the store unpinned
	// (trust on first use; pin it with --mesh-id).
	MeshID       string `json:"meshID,omitempty"`
	MeshFirstUse bool   `json:"meshFirstUse,omitempty"`
	// Version is the answering coordinator's build (its --version).
	Version          string `json:"version,omitempty"`
	State            string `json:"state"`
	Message          string `json:"message,omitempty"`
	ManifestHash     string `json:"manifestHash,omitempty"`
	Generation       uint64 `json:"generation,omitempty"`
	Head             string `json:"head,omitempty"`
	CAFingerprint    string `json:"caFingerprint,omitempty"`
	AcceptsSimulated bool   `json:"acceptsSimulated"`
	// Hosts are the live certificates, at most MaxStatusHosts of them (or
	// those a HostsRequest for one host matched); HostCount is how many
	// are live in all. Only owners and attested coordinators see the list
	// (POST /v1/hosts); GET /v1/status withholds it (HostsWithheld).
	Hosts         []Host `json:"hosts"`
	HostCount     int    `json:"hostCount"`
	HostsWithheld bool   `json:"hostsWithheld,omitempty"`
	// Members are the coordinators of the cluster as gossip announces them:
	// hints, not proof (this one included, Self).
	Members []Member `json:"members,omitempty"`
}

// HostsRequest asks for the status with its host list: names, addresses,
// fingerprints and pods, which are the mesh owners' to see. Proof is an
// OwnerProof for PurposeHosts; a coordinator that attested in the TLS
// handshake as a coordinator role needs none. Host, when set, lists only the
// live hosts it names: a certificate fingerprint or name, an overlay IP, or
// a pod as namespace/name.
type HostsRequest struct {
	Proof *OwnerProof `json:"proof,omitempty"`
	Host  string      `json:"host,omitempty"`
}

// MaxStatusHosts bounds the hosts a status lists, so a status stays small at
// any mesh size (a client reads at most 4 MiB of an answer).
const MaxStatusHosts = 1000

// Member is one coordinator as it announces itself in gossip.
type Member struct {
	Name       string `json:"name"`
	API        string `json:"api"`
	State      string `json:"state"`
	Generation uint64 `json:"generation"`
	Head       string `json:"head,omitempty"`
	// Version is the member's build, as it announces it (not vouched for).
	Version string `json:"version,omitempty"`
	// Vouch is an HMAC over API, State, Generation and Head with a key
	// derived from the mesh's seed (hex): set by coordinators that hold it,
	// so that peers holding it too can tell an announcement from the mesh's
	// coordinators from anyone else's. Gossip itself is unauthenticated.
	Vouch string `json:"vouch,omitempty"`
	// Health is the membership's view: alive or suspect.
	Health string `json:"health,omitempty"`
	Self   bool   `json:"self,omitempty"`
}

// Host is one live certificate.
type Host struct {
	Name        string    `json:"name"`
	Role        string    `json:"role"`
	IP          string    `json:"ip"`
	Groups      []string  `json:"groups"`
	NotAfter    time.Time `json:"notAfter"`
	Fingerprint string    `json:"fingerprint"`
	Workload    string    `json:"workload,omitempty"`
	// Holder names the certificate's public key (for meshctl revoke).
	Holder string `json:"holder,omitempty"`
	// Revoked: the manifest revokes this certificate or its key; peers
	// refuse it, and it is not renewed.
	Revoked bool `json:"revoked,omitempty"`
}

// Named reports whether what names the host: its certificate's
// fingerprint or name, its overlay IP, or its pod (namespace/name). Status
// filters and meshctl revoke name hosts the same way.
func (h *Host) Named(what string) bool {
	return what != "" && (what == h.Fingerprint || what == h.Name || what == h.IP || what == h.Workload)
}

// Error is the body of every failed request.
type Error struct {
	Error string `json:"error"`
	// Code is why, for machines (CodeRefused, CodeNonce, ...).
	Code Code `json:"code,omitempty"`
}

// AttestResponse answers GET /.well-known/sealmesh/attest?nonce=HEX: the
// coordinator's evidence, whose report data is AttestReportData over the
// caller's nonce and the rest of this answer. A verifier that does not speak
// attested TLS checks the evidence with its platform's tools, recomputes the
// report data, and learns which mesh, head and CA this coordinator serves
// and which TLS key it answers with (docs/verify.md).
type AttestResponse struct {
	Evidence     Evidence `json:"evidence"`
	TLSPublicKey []byte   `json:"tlsPublicKey"` // DER SubjectPublicKeyInfo
	MeshID       string   `json:"meshID"`
	Head         string   `json:"head"`
	Generation   uint64   `json:"generation"`
	CA           string   `json:"ca"` // PEM
}

// AttestReportData is the report data of an AttestResponse's evidence:
// SHA-512 over "sealmesh attest v1\x00" and, each as an 8-byte big-endian
// length and its bytes, the nonce, SHA-256 of the TLS public key, the mesh
// ID, the head, the generation as 8 big-endian bytes, and SHA-256 of the CA
// certificate's PEM.
func AttestReportData(nonce []byte, r *AttestResponse) [64]byte {
	tlsKey := sha256.Sum256(r.TLSPublicKey)
	ca := sha256.Sum256([]byte(r.CA))
	var gen [8]byte
	binary.BigEndian.PutUint64(gen[:], r.Generation)
	h := sha512.New()
	h.Write([]byte("sealmesh attest v1\x00"))
	for _, part := range [][]byte{nonce, tlsKey[:], []byte(r.MeshID), []byte(r.Head), gen[:], ca[:]} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	var out [64]byte
	copy(out[:], h.Sum(nil))
	return out
}
