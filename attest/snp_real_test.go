package attest

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify/testdata"
	"github.com/google/go-sev-guest/verify/trust"
	"google.golang.org/protobuf/proto"
)

// TestRealSNPEvidence verifies a real SEV-SNP report from a Milan machine, with
// its VCEK as AMD's key distribution service issued it, against the AMD roots
// go-sev-guest ships: the same code that checks simulated evidence, with the
// real trust root. The clock is set to when the VCEK was valid.
func TestRealSNPEvidence(t *testing.T) {
	v := &Verifier{Now: func() time.Time { return time.Date(2022, time.September, 24, 1, 0, 0, 0, time.UTC) }}

	report, err := abi.ReportToProto(testdata.AttestationBytes)
	if err != nil {
		t.Fatal(err)
	}
	evidence := func(r *spb.Report) Evidence {
		b, err := proto.Marshal(&spb.Attestation{Report: r, CertificateChain: &spb.CertificateChain{VcekCert: testdata.VcekBytes}})
		if err != nil {
			t.Fatal(err)
		}
		return Evidence{Platform: PlatformSNP, Data: b}
	}
	var rd [64]byte
	copy(rd[:], report.GetReportData())
	measurement := hex.EncodeToString(report.GetMeasurement())

	c, err := v.Verify(context.Background(), evidence(report), rd)
	if err != nil {
		t.Fatalf("real SNP evidence: %v", err)
	}
	if c.Measurement != measurement || c.Platform != PlatformSNP {
		t.Fatalf("claims %+v", c)
	}
	policy := &SNPPolicy{Measurements: []string{measurement}, AllowDebug: c.Debug}
	if err := c.Satisfies(Attestation{SNP: policy}); err != nil {
		t.Fatalf("Satisfies its own measurement: %v", err)
	}
	other := &SNPPolicy{Measurements: []string{strings.Repeat("0", 96)}, AllowDebug: true}
	if err := c.Satisfies(Attestation{SNP: other}); err == nil {
		t.Fatal("accepted for a measurement the policy does not list")
	}
	// A simulated policy never accepts real evidence, and vice versa.
	if err := c.Satisfies(Attestation{Simulated: policy}); err == nil {
		t.Fatal("real SNP evidence accepted by a simulated-only role")
	}

	// Bound to other report data (another nonce or key): refused.
	var other64 [64]byte
	if _, err := v.Verify(context.Background(), evidence(report), other64); err == nil || !strings.Contains(err.Error(), "does not match this enrolment") {
		t.Fatalf("other report data: %v", err)
	}
	// One byte of the measurement changed: the signature no longer holds.
	tampered := proto.Clone(report).(*spb.Report)
	tampered.Measurement[0] ^= 1
	if _, err := v.Verify(context.Background(), evidence(tampered), rd); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("tampered report: %v", err)
	}
	// One byte of the signature changed.
	badSig := proto.Clone(report).(*spb.Report)
	badSig.Signature[10] ^= 1
	if _, err := v.Verify(context.Background(), evidence(badSig), rd); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("tampered signature: %v", err)
	}
	// Simulated evidence is not real evidence: the same bytes claimed as
	// "simulated" chain to AMD's ARK, which no simulated policy pins.
	sim := evidence(report)
	sim.Platform = PlatformSimulated
	if _, err := v.Verify(context.Background(), sim, rd); err == nil {
		t.Fatal("real report without ARK/ASK in the chain verified as simulated")
	}
}

// TestChainCache: a verified chain is remembered, and the report is still checked
// on every call; a chain the cache has not seen is verified in full.
func TestChainCache(t *testing.T) {
	v := &Verifier{Now: func() time.Time { return time.Date(2022, time.September, 24, 1, 0, 0, 0, time.UTC) }}
	clear(chains.m)
	report, _ := abi.ReportToProto(testdata.AttestationBytes)
	ev := func(r *spb.Report, vcek []byte) Evidence {
		b, _ := proto.Marshal(&spb.Attestation{Report: r, CertificateChain: &spb.CertificateChain{VcekCert: vcek}})
		return Evidence{Platform: PlatformSNP, Data: b}
	}
	var rd [64]byte
	copy(rd[:], report.GetReportData())
	if _, err := v.Verify(context.Background(), ev(report, testdata.VcekBytes), rd); err != nil {
		t.Fatal(err)
	}
	if len(chains.m) != 1 {
		t.Fatalf("cache holds %d chains after one verification", len(chains.m))
	}
	tampered := proto.Clone(report).(*spb.Report)
	tampered.ReportData[0] ^= 1
	var trd [64]byte
	copy(trd[:], tampered.GetReportData())
	if _, err := v.Verify(context.Background(), ev(tampered, testdata.VcekBytes), trd); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("a tampered report over a cached chain: %v", err)
	}
	// The same VCEK claimed as simulated is another cache key: full verification.
	if k1, k2 := chainKey(false, &spb.CertificateChain{VcekCert: testdata.VcekBytes}), chainKey(true, &spb.CertificateChain{VcekCert: testdata.VcekBytes}); k1 == k2 {
		t.Fatal("real and simulated chains share a cache key")
	}
	// Past the VCEK's validity the cached entry is not used.
	v.Now = func() time.Time { return time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC) }
	if _, err := v.Verify(context.Background(), ev(report, testdata.VcekBytes), rd); err == nil {
		t.Fatal("an expired chain verified from the cache")
	}
}

// fakeKDS answers as AMD's key distribution service would, counting requests.
type fakeKDS struct {
	answers map[string][]byte
	asked   int
}

func (f *fakeKDS) Get(url string) ([]byte, error) {
	f.asked++
	if b, ok := f.answers[url]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("404 %s", url)
}

// TestVCEKFromCacheOrAMD: evidence without its VCEK is refused off-line, served
// from the certificate cache when it is there, and fetched (once) only where
// fetching is allowed; what is fetched is verified against AMD's roots.
func TestVCEKFromCacheOrAMD(t *testing.T) {
	v := &Verifier{Now: func() time.Time { return time.Date(2022, time.September, 24, 1, 0, 0, 0, time.UTC) }}
	clear(chains.m)
	trust.ClearProductCertCache()
	report, _ := abi.ReportToProto(testdata.AttestationBytes)
	data, _ := proto.Marshal(&spb.Attestation{Report: report})
	ev := Evidence{Platform: PlatformSNP, Data: data}
	var rd [64]byte
	copy(rd[:], report.GetReportData())
	kds := &fakeKDS{answers: map[string][]byte{
		"https://kdsintf.amd.com/vcek/v1/Milan/cert_chain":                                                                           trust.AskArkMilanVcekBytes,
		"https://kdsintf.amd.com/vcek/v1/Milan/" + hex.EncodeToString(report.GetChipId()) + "?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68": testdata.VcekBytes,
	}}
	dir := t.TempDir()
	ctx := context.Background()

	if _, err := (&Verifier{Now: v.Now}).Verify(ctx, ev, rd); err == nil || !strings.Contains(err.Error(), "lacks its VCEK") {
		t.Fatalf("off-line without a VCEK: %v", err)
	}
	if _, err := (&Verifier{Now: v.Now, SNPCerts: &CertCache{Dir: dir}}).Verify(ctx, ev, rd); err == nil || !strings.Contains(err.Error(), "fetching from AMD is off") {
		t.Fatalf("empty cache, fetching off: %v", err)
	}
	c, err := (&Verifier{Now: v.Now, SNPCerts: &CertCache{Dir: dir, Next: kds}}).Verify(ctx, ev, rd)
	if err != nil {
		t.Fatalf("fetching allowed: %v", err)
	}
	if c.Measurement != hex.EncodeToString(report.GetMeasurement()) || kds.asked == 0 {
		t.Fatalf("claims %+v after %d requests", c, kds.asked)
	}
	clear(chains.m)
	trust.ClearProductCertCache()
	asked := kds.asked
	if _, err := (&Verifier{Now: v.Now, SNPCerts: &CertCache{Dir: dir}}).Verify(ctx, ev, rd); err != nil {
		t.Fatalf("from the cache, fetching off: %v", err)
	}
	if kds.asked != asked {
		t.Fatal("the cache went to AMD again")
	}
}
