package ipam

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Lease records: one per address, in the untrusted store, MAC'd under a
// seed-derived key (Allocator.mac).

const (
	// leasePrefix names lease records: one per lease, so an enrolment writes
	// one small record whatever the size of the mesh.
	leasePrefix = "lease-"
	// holderPrefix names the pointer from a public key to its lease, so a
	// retried enrolment of the same key (on any coordinator) gets the same
	// address instead of a second one.
	holderPrefix = "holder-"
)

func leaseKey(ip netip.Addr) string {
	return leasePrefix + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
}

// Holder names the holder of a public key in lease records.
func Holder(publicKey []byte) string {
	s := sha256.Sum256(publicKey)
	return hex.EncodeToString(s[:16])
}

// Lease ties an overlay IP to the certificate that carries it. A lease ends when
// the certificate expires or the holder releases it, whichever is first, so one IP
// is never in two live certificates.
type Lease struct {
	IP          netip.Addr `json:"ip"`
	Name        string     `json:"name"`
	Role        string     `json:"role"`
	Groups      []string   `json:"groups"`
	Fingerprint string     `json:"fingerprint"`
	NotAfter    time.Time  `json:"notAfter"`
	// Holder is the public key's Holder: the same key enrolling again keeps
	// its address.
	Holder string `json:"holder,omitempty"`
	// Workload is what the requester said it is (pod namespace/name); shown in
	// status, never used for identity.
	Workload string `json:"workload,omitempty"`
	// ReleaseHash is the SHA-256 of the secret the holder must show to release.
	ReleaseHash string `json:"releaseHash,omitempty"`
	// Released: the holder gave the address back (CNI DEL). Its certificate
	// is still valid until NotAfter, so the address stays taken until then:
	// handing it to the next holder would put it in two live certificates.
	Released bool `json:"released,omitempty"`
	// MAC authenticates the record (HMAC-SHA256 under the seed's lease key
	// over the record's JSON without MAC): the store is untrusted.
	MAC string `json:"mac,omitempty"`
	// Previous are the certificates issued to the same holder at this address
	// before Fingerprint (renewed away) that have not expired: a revocation
	// of the holder blocks them too.
	Previous []Issued `json:"previous,omitempty"`
	// Superseded are the live certificates of another key that held this
	// fixed address before (a lighthouse enrolled again with a new key):
	// refused everywhere, so one fixed identity is never in two live
	// certificates of different keys.
	Superseded []Issued `json:"superseded,omitempty"`
}

// Issued is one certificate a lease's holder was issued.
type Issued struct {
	Fingerprint string    `json:"fingerprint"`
	NotAfter    time.Time `json:"notAfter"`
}

// maxPrevious bounds a lease's Previous: a host renews at a third of the
// lifetime left, so three or four are live at most; more means renewals in a
// loop, and the oldest go first.
const maxPrevious = 16

// Fingerprints are the lease's certificates that are live at now: the
// current one and those renewed away.
func (l Lease) Fingerprints(now time.Time) []string {
	var out []string
	if l.Fingerprint != "" && l.NotAfter.After(now) {
		out = append(out, l.Fingerprint)
	}
	for _, p := range l.Previous {
		if p.NotAfter.After(now) {
			out = append(out, p.Fingerprint)
		}
	}
	return out
}

// supersede returns what a lease for a new holder of prev's fixed address
// must keep refused: every live certificate of prev, and what prev itself
// superseded.
func supersede(prev Lease, now time.Time) []Issued {
	var out []Issued
	for _, p := range slices.Concat(prev.Superseded, prev.Previous, []Issued{{Fingerprint: prev.Fingerprint, NotAfter: prev.NotAfter}}) {
		if p.Fingerprint != "" && p.NotAfter.After(now) {
			out = append(out, p)
		}
	}
	if len(out) > maxPrevious {
		out = out[len(out)-maxPrevious:]
	}
	return out
}

// ExpiryGrace is how long after its certificate's end an address stays
// taken: a coordinator whose clock runs ahead (or was pushed forward) must
// not hand out an address whose certificate hosts still accept by theirs.
const ExpiryGrace = 10 * time.Minute

// taken reports whether the lease's address may not be handed to another
// holder at now.
func (l Lease) taken(now time.Time) bool {
	return l.NotAfter.Add(ExpiryGrace).After(now)
}

// carry returns what a new lease for the same holder keeps of prev's
// certificates: every one still live.
func carry(prev Lease, now time.Time) []Issued {
	var out []Issued
	for _, p := range append(slices.Clone(prev.Previous), Issued{Fingerprint: prev.Fingerprint, NotAfter: prev.NotAfter}) {
		if p.Fingerprint != "" && p.NotAfter.After(now) {
			out = append(out, p)
		}
	}
	if len(out) > maxPrevious {
		out = out[len(out)-maxPrevious:]
	}
	return out
}
