// Package attest turns TEE evidence into claims a manifest role can be matched
// against. Verification is split in two steps so that one signature check serves
// every role: Verify checks the evidence's signatures and its binding to the
// enrolment (report data), Claims.Satisfies checks the claims against one role's
// policy. Claims are meaningful only after Satisfies: for the simulated platform,
// the root that signed the evidence is trusted only because the policy pins it.
package attest

import (
	"context"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-sev-guest/verify/trust"
	tdxtrust "github.com/google/go-tdx-guest/verify/trust"
)

// Evidence is what an issuer produces and a verifier checks.
type Evidence struct {
	// Platform is a manifest platform name: "simulated" or "snp".
	Platform string `json:"platform"`
	// Data is the platform's evidence: for SNP-shaped platforms a go-sev-guest
	// Attestation protobuf (report and certificate chain).
	Data []byte `json:"data"`
}

// Issuer produces evidence whose report data is the given 64 bytes.
type Issuer interface {
	Platform() string
	Evidence(reportData [64]byte) (Evidence, error)
}

// Sealer is an issuer whose TEE derives a key bound to this workload's
// measurement, for sealing state at rest.
type Sealer interface {
	SealingKey() ([]byte, error)
}

// Claims are what verified evidence says about the workload.
type Claims struct {
	Platform string
	// Measurement is the hex launch measurement.
	Measurement string
	// RootFingerprint is the hex SHA-256 of the root certificate that the
	// evidence chains to.
	RootFingerprint string
	// Debug is true when the guest policy lets the host read guest memory.
	Debug bool
	// TDX only: runtime measurement registers, XFAM, TEE_TCB_SVN,
	// MRCONFIGID, MROWNER and the TDX module's MRSEAM, hex; and the TD
	// attributes SEPT_VE_DISABLE and MIGRATABLE.
	RTMRs                                        []string
	Xfam, TeeTcbSvn, MRConfigID, MROwner, MRSeam string
	SeptVEDisable, Migratable                    bool
	// oidc only: who the service-account token names.
	Issuer                                 string
	Audience                               []string
	Namespace, ServiceAccount, Pod, PodUID string
	// SNP only: what the report says beyond the measurement.
	MigrationAgent              bool
	HostData, FamilyID, ImageID string // hex
	VMPL                        int
	TCB                         SNPTCB // the reported TCB
}

// ReportData binds evidence to one enrolment: a fresh nonce the coordinator issued,
// the exact public key to be certified, and the rest of the request. Each part is
// length-prefixed so that no two different inputs hash alike.
func ReportData(nonce, publicKey, request []byte) [64]byte {
	h := sha512.New()
	h.Write([]byte("sealmesh enrolment v1\x00"))
	for _, part := range [][]byte{nonce, publicKey, request} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	var out [64]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Verify checks the evidence's signatures and that it commits to reportData. It does
// not decide whether the workload is acceptable: that is Claims.Satisfies.
// Service-account tokens need a Verifier with Tokens.
func Verify(ev Evidence, reportData [64]byte) (*Claims, error) {
	return (*Verifier)(nil).Verify(context.Background(), ev, reportData)
}

// Verifier verifies evidence of every platform: the TEE platforms offline
// or with the caches below, service-account tokens with Tokens (nil: tokens
// are refused). A nil Verifier is the defaults.
type Verifier struct {
	Tokens *TokenVerifier
	// SNPCerts supplies VCEKs missing from SNP evidence (a CertCache); nil:
	// off-line, the evidence must carry its VCEK.
	SNPCerts trust.HTTPSGetter
	// TDXCollateral supplies Intel's collateral (a CollateralCache); with it,
	// TDX quotes are also checked for TCB status. nil: signature and chain only.
	TDXCollateral tdxtrust.HTTPSGetter
	// Now is the clock certificates are checked at (time.Now if nil).
	Now func() time.Time
}

func (v *Verifier) now() time.Time {
	if v != nil && v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Verify checks ev for reportData, as the package's Verify, and tokens.
func (v *Verifier) Verify(ctx context.Context, ev Evidence, reportData [64]byte) (_ *Claims, err error) {
	defer recovered(ev.Platform, &err)
	switch ev.Platform {
	case PlatformSimulated:
		return verifySNP(ev, reportData, true, nil, v.now())
	case PlatformSNP:
		var certs trust.HTTPSGetter
		if v != nil && v.SNPCerts != nil {
			certs = v.SNPCerts
		}
		return verifySNP(ev, reportData, false, certs, v.now())
	case PlatformTDX:
		var collateral tdxtrust.HTTPSGetter
		if v != nil && v.TDXCollateral != nil {
			collateral = v.TDXCollateral
		}
		return verifyTDX(ev, reportData, collateral, v.now())
	case PlatformOIDC:
		if v == nil || v.Tokens == nil {
			return nil, errors.New("attest: this coordinator verifies no service-account tokens (start it with --kubernetes-tokens)")
		}
		return v.Tokens.Verify(ctx, ev.Data)
	default:
		return nil, fmt.Errorf("attest: unknown platform %q (known: simulated, snp, tdx, oidc)", ev.Platform)
	}
}

// Satisfies reports whether the claims meet a role's attestation policy. A role that
// names no policy for the claims' platform refuses it.
func (c *Claims) Satisfies(a Attestation) error {
	switch c.Platform {
	case PlatformTDX:
		return c.satisfiesTDX(a.TDX)
	case PlatformOIDC:
		return c.satisfiesOIDC(a.OIDC)
	}
	var p *SNPPolicy
	switch c.Platform {
	case PlatformSimulated:
		p = a.Simulated
	case PlatformSNP:
		p = a.SNP
	}
	if p == nil {
		return fmt.Errorf("platform %q is not accepted by this role", c.Platform)
	}
	// For simulated evidence the pin is what makes the signature mean anything;
	// manifest validation requires it, and this check must never be skipped.
	if (c.Platform == PlatformSimulated || p.RootFingerprint != "") && c.RootFingerprint != p.RootFingerprint {
		return fmt.Errorf("evidence chains to root %s, the role pins %s", short(c.RootFingerprint), short(p.RootFingerprint))
	}
	if c.Debug && !p.AllowDebug {
		return fmt.Errorf("guest policy allows debug and the role does not (set allowDebug to accept)")
	}
	if c.MigrationAgent && !p.AllowMigrationAgent {
		return fmt.Errorf("guest policy allows a migration agent and the role does not (set allowMigrationAgent to accept)")
	}
	if !slices.Contains(p.Measurements, c.Measurement) {
		return fmt.Errorf("measurement %s is not one of the role's %d measurements", short(c.Measurement), len(p.Measurements))
	}
	for _, f := range []struct{ name, want, got string }{
		{"host data", p.HostData, c.HostData}, {"family ID", p.FamilyID, c.FamilyID}, {"image ID", p.ImageID, c.ImageID},
	} {
		if f.want != "" && f.want != f.got {
			return fmt.Errorf("%s %s is not the role's %s", f.name, short(f.got), short(f.want))
		}
	}
	if p.VMPL != nil && *p.VMPL != c.VMPL {
		return fmt.Errorf("report comes from VMPL %d, the role wants %d", c.VMPL, *p.VMPL)
	}
	if m := p.MinimumTCB; m != nil {
		t := c.TCB
		if t.Bootloader < m.Bootloader || t.TEE < m.TEE || t.SNP < m.SNP || t.Microcode < m.Microcode {
			return fmt.Errorf("TCB too low: reported bootloader %d, tee %d, snp %d, microcode %d; the role wants at least %d, %d, %d, %d",
				t.Bootloader, t.TEE, t.SNP, t.Microcode, m.Bootloader, m.TEE, m.SNP, m.Microcode)
		}
	}
	return nil
}

func (c *Claims) satisfiesTDX(p *TDXPolicy) error {
	if p == nil {
		return fmt.Errorf("platform %q is not accepted by this role", c.Platform)
	}
	if c.Debug && !p.AllowDebug {
		return fmt.Errorf("TD attributes allow debug and the role does not (set allowDebug to accept)")
	}
	if !slices.Contains(p.MRTDs, c.Measurement) {
		return fmt.Errorf("MRTD %s is not one of the role's %d", short(c.Measurement), len(p.MRTDs))
	}
	for i, want := range p.RTMRs {
		if want != "" && (i >= len(c.RTMRs) || c.RTMRs[i] != want) {
			return fmt.Errorf("RTMR%d does not match the role's", i)
		}
	}
	if p.Xfam != "" && p.Xfam != c.Xfam {
		return fmt.Errorf("XFAM %s is not the role's %s", c.Xfam, p.Xfam)
	}
	if !c.SeptVEDisable && !p.AllowSeptVE {
		return fmt.Errorf("TD attributes lack SEPT_VE_DISABLE (the host can inject #VE) and the role does not allow it (set allowSeptVE to accept)")
	}
	if c.Migratable && !p.AllowMigratable {
		return fmt.Errorf("TD attributes allow migration and the role does not (set allowMigratable to accept)")
	}
	if len(p.MRConfigIDs) > 0 && !slices.Contains(p.MRConfigIDs, c.MRConfigID) {
		return fmt.Errorf("MRCONFIGID %s is not one of the role's %d", short(c.MRConfigID), len(p.MRConfigIDs))
	}
	if p.MROwner != "" && p.MROwner != c.MROwner {
		return fmt.Errorf("MROWNER %s is not the role's %s", short(c.MROwner), short(p.MROwner))
	}
	if len(p.MRSeams) > 0 && !slices.Contains(p.MRSeams, c.MRSeam) {
		return fmt.Errorf("MRSEAM (TDX module) %s is not one of the role's %d", short(c.MRSeam), len(p.MRSeams))
	}
	if p.MinimumTeeTcbSvn != "" {
		got, _ := hex.DecodeString(c.TeeTcbSvn)
		want, _ := hex.DecodeString(p.MinimumTeeTcbSvn)
		for i := range want {
			if i >= len(got) || got[i] < want[i] {
				return fmt.Errorf("TCB too low: TEE_TCB_SVN %s is below the role's minimum %s (component %d)", c.TeeTcbSvn, p.MinimumTeeTcbSvn, i)
			}
		}
	}
	return nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "…"
	}
	return h
}
