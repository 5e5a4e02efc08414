package attest

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/sealmesh/sealmesh/internal/hexstr"
)

// The attestation policies a manifest's roles name, the platforms they
// cover and the matching of claims to roles: adding a TEE platform touches
// this package only.

// Platform names as they appear under a role's attestation policy.
const (
	PlatformSimulated = "simulated"
	PlatformSNP       = "snp"
	PlatformTDX       = "tdx"
	PlatformOIDC      = "oidc"
)

// Attestation holds one policy per platform a role accepts. A platform without a
// policy is refused for that role: in particular simulated evidence is accepted only
// where the manifest names `simulated`.
type Attestation struct {
	Simulated *SNPPolicy  `json:"simulated,omitempty"`
	SNP       *SNPPolicy  `json:"snp,omitempty"`
	TDX       *TDXPolicy  `json:"tdx,omitempty"`
	OIDC      *OIDCPolicy `json:"oidc,omitempty"`
}

// TDXPolicy is what an Intel TDX quote must show.
type TDXPolicy struct {
	// MRTDs lists acceptable TD measurements, 96 hex characters each.
	MRTDs []string `json:"mrtds"`
	// RTMRs, when set, are the four runtime measurement registers, 96 hex
	// characters each; an empty entry is not checked.
	RTMRs      []string `json:"rtmrs,omitempty"`
	AllowDebug bool     `json:"allowDebug,omitempty"`
	// Xfam, when set, must equal the TD's XFAM (16 hex characters): the CPU
	// extended features the TD may use.
	Xfam string `json:"xfam,omitempty"`
	// MinimumTeeTcbSvn, when set, is the lowest TEE_TCB_SVN accepted (32 hex
	// characters), compared component by component.
	MinimumTeeTcbSvn string `json:"minimumTeeTcbSvn,omitempty"`
	// MRConfigIDs, when set, lists acceptable MRCONFIGID values (96 hex
	// characters): the host-provided configuration the TD was launched with.
	MRConfigIDs []string `json:"mrConfigIds,omitempty"`
	// MROwner, when set, must equal the TD's MROWNER (96 hex characters).
	MROwner string `json:"mrOwner,omitempty"`
	// MRSeams, when set, lists acceptable measurements of the TDX module
	// (MRSEAM, 96 hex characters).
	MRSeams []string `json:"mrSeams,omitempty"`
	// AllowSeptVE accepts a TD without SEPT_VE_DISABLE (the host can then
	// inject #VE exceptions on EPT violations); refused by default.
	AllowSeptVE bool `json:"allowSeptVE,omitempty"`
	// AllowMigratable accepts a migratable TD (its state may leave the
	// platform through a migration TD); refused by default.
	AllowMigratable bool `json:"allowMigratable,omitempty"`
}

// OIDCPolicy accepts a Kubernetes service-account token: the weaker proof, only
// where the manifest allows it.
type OIDCPolicy struct {
	Issuer          string   `json:"issuer"`
	Audience        string   `json:"audience"`
	Namespaces      []string `json:"namespaces,omitempty"`
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
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
	// AllowMigrationAgent accepts guests whose policy lets a migration agent
	// export their memory. Off by default.
	AllowMigrationAgent bool `json:"allowMigrationAgent,omitempty"`
	// HostData, when set, must equal the report's HOST_DATA (64 hex characters):
	// what the host supplied at launch, e.g. a hash of the pod's policy.
	HostData string `json:"hostData,omitempty"`
	// FamilyID and ImageID, when set, must equal the ID block's (32 hex each).
	FamilyID string `json:"familyID,omitempty"`
	ImageID  string `json:"imageID,omitempty"`
	// VMPL, when set, is the privilege level the report must come from (0-3).
	VMPL *int `json:"vmpl,omitempty"`
	// MinimumTCB holds the lowest security patch levels accepted.
	MinimumTCB *SNPTCB `json:"minimumTCB,omitempty"`
}

// SNPTCB is an SEV-SNP TCB version by its security patch levels.
type SNPTCB struct {
	Bootloader uint8 `json:"bootloader"`
	TEE        uint8 `json:"tee"`
	SNP        uint8 `json:"snp"`
	Microcode  uint8 `json:"microcode"`
}

// Platforms lists the platforms this policy names, in a fixed order.
func (a Attestation) Platforms() []string {
	var out []string
	for _, p := range []struct {
		name string
		set  bool
	}{{PlatformSimulated, a.Simulated != nil}, {PlatformSNP, a.SNP != nil}, {PlatformTDX, a.TDX != nil}, {PlatformOIDC, a.OIDC != nil}} {
		if p.set {
			out = append(out, p.name)
		}
	}
	return out
}

// Check reports each problem of the policy at path p of a manifest to bad,
// with the field's path and the fix.
func (a Attestation) Check(p string, bad func(path, format string, args ...any)) {
	if a.Simulated == nil && a.SNP == nil && a.TDX == nil && a.OIDC == nil {
		bad(p, "name at least one platform (simulated, snp, tdx, oidc)")
	}
	if a.Simulated != nil {
		a.Simulated.check(p+".simulated", bad, true)
	}
	if a.SNP != nil {
		a.SNP.check(p+".snp", bad, false)
	}
	if t := a.TDX; t != nil {
		if len(t.MRTDs) == 0 {
			bad(p+".tdx.mrtds", "at least one MRTD is required")
		}
		for k, v := range t.MRTDs {
			if err := hexstr.Check(v, 96); err != nil {
				bad(fmt.Sprintf("%s.tdx.mrtds[%d]", p, k), "%v", err)
			}
		}
		if len(t.RTMRs) != 0 && len(t.RTMRs) != 4 {
			bad(p+".tdx.rtmrs", "want none or 4 entries (RTMR0-3), got %d", len(t.RTMRs))
		}
		if err := hexstr.Check(t.Xfam, 16); t.Xfam != "" && err != nil {
			bad(p+".tdx.xfam", "%v", err)
		}
		if err := hexstr.Check(t.MinimumTeeTcbSvn, 32); t.MinimumTeeTcbSvn != "" && err != nil {
			bad(p+".tdx.minimumTeeTcbSvn", "%v", err)
		}
		for name, list := range map[string][]string{"mrConfigIds": t.MRConfigIDs, "mrSeams": t.MRSeams} {
			for k, v := range list {
				if err := hexstr.Check(v, 96); err != nil {
					bad(fmt.Sprintf("%s.tdx.%s[%d]", p, name, k), "%v", err)
				}
			}
		}
		if err := hexstr.Check(t.MROwner, 96); t.MROwner != "" && err != nil {
			bad(p+".tdx.mrOwner", "%v", err)
		}
		for k, v := range t.RTMRs {
			if err := hexstr.Check(v, 96); v != "" && err != nil {
				bad(fmt.Sprintf("%s.tdx.rtmrs[%d]", p, k), "%v or empty", err)
			}
		}
	}
	if o := a.OIDC; o != nil {
		if u, err := url.Parse(o.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
			bad(p+".oidc.issuer", "want the cluster's https issuer URL, got %q", o.Issuer)
		}
		if o.Audience == "" {
			bad(p+".oidc.audience", "required: the audience the projected token is minted for")
		}
	}
}

func (s *SNPPolicy) check(p string, bad func(path, format string, args ...any), simulated bool) {
	if len(s.Measurements) == 0 {
		bad(p+".measurements", "at least one launch measurement is required")
	}
	for k, ms := range s.Measurements {
		if err := hexstr.Check(ms, 96); err != nil {
			bad(fmt.Sprintf("%s.measurements[%d]", p, k), "%v", err)
		}
	}
	for _, f := range []struct {
		name, v string
		n       int
	}{{"hostData", s.HostData, 64}, {"familyID", s.FamilyID, 32}, {"imageID", s.ImageID, 32}} {
		if err := hexstr.Check(f.v, f.n); f.v != "" && err != nil {
			bad(p+"."+f.name, "%v", err)
		}
	}
	if s.VMPL != nil && (*s.VMPL < 0 || *s.VMPL > 3) {
		bad(p+".vmpl", "want 0 to 3, got %d", *s.VMPL)
	}
	switch err := hexstr.Check(s.RootFingerprint, 64); {
	case simulated && s.RootFingerprint == "":
		bad(p+".rootFingerprint", "required for simulated: the SHA-256 of the simulated root certificate (meshctl sim-tee init prints it)")
	case s.RootFingerprint != "" && err != nil:
		bad(p+".rootFingerprint", "%v", err)
	}
}

// Role is a named attestation policy: a workload role or a coordinator role
// of a manifest.
type Role interface {
	RoleName() string
	RolePolicy() Attestation
}

// Match returns the first of roles whose policy claims satisfy and that also
// accepts (nil: no further check), or an error saying why each refused.
// Every check of evidence against a manifest's roles goes through it:
// enrolment, a coordinator's peers, a client's trust in coordinators.
func Match[R Role](c *Claims, roles []R, also func(R) error) (R, error) {
	var zero R
	if len(roles) == 0 {
		return zero, errors.New("no roles to match")
	}
	why := make([]string, 0, len(roles))
	for _, r := range roles {
		err := c.Satisfies(r.RolePolicy())
		if err == nil && also != nil {
			err = also(r)
		}
		if err == nil {
			return r, nil
		}
		why = append(why, fmt.Sprintf("role %s: %v", r.RoleName(), err))
	}
	return zero, errors.New(strings.Join(why, "; "))
}
