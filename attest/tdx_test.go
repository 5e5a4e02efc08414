package attest

import (
	"context"
	"strings"
	"testing"
	"time"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxtest "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"
)

// TestRealTDXQuote verifies the real TDX quote go-tdx-guest ships (a Sapphire
// Rapids production quote) against Intel's root, off-line, at a time its PCK
// chain was valid.
func TestRealTDXQuote(t *testing.T) {
	when := time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)
	at := func() time.Time { return when }

	q, err := tdxabi.QuoteToProto(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	body := q.(*tdxpb.QuoteV4).GetTdQuoteBody()
	var rd [64]byte
	copy(rd[:], body.GetReportData())
	ev := Evidence{Platform: PlatformTDX, Data: testdata.RawQuote}

	c, err := (&Verifier{Now: at}).Verify(context.Background(), ev, rd)
	if err != nil {
		t.Fatalf("real TDX quote: %v", err)
	}
	if len(c.Measurement) != 96 || len(c.RTMRs) != 4 {
		t.Fatalf("claims %+v", c)
	}
	if len(c.MRConfigID) != 96 || len(c.MROwner) != 96 || len(c.MRSeam) != 96 {
		t.Fatalf("claims lack MRCONFIGID, MROWNER or MRSEAM: %+v", c)
	}
	policy := &TDXPolicy{MRTDs: []string{c.Measurement}, RTMRs: []string{"", "", c.RTMRs[2], ""}, AllowDebug: c.Debug,
		Xfam: c.Xfam, MinimumTeeTcbSvn: c.TeeTcbSvn, MRConfigIDs: []string{c.MRConfigID}, MROwner: c.MROwner, MRSeams: []string{c.MRSeam},
		AllowSeptVE: !c.SeptVEDisable, AllowMigratable: c.Migratable}
	if err := c.Satisfies(Attestation{TDX: policy}); err != nil {
		t.Fatalf("Satisfies its own MRTD: %v", err)
	}
	tests := []struct {
		name string
		p    Attestation
		want string
	}{
		{"other MRTD", Attestation{TDX: &TDXPolicy{MRTDs: []string{strings.Repeat("0", 96)}, AllowDebug: true}}, "MRTD"},
		{"other RTMR2", tdxWith(policy, func(p *TDXPolicy) { p.RTMRs = []string{"", "", strings.Repeat("0", 96), ""} }), "RTMR2"},
		{"other XFAM", tdxWith(policy, func(p *TDXPolicy) { p.Xfam = "ffffffffffffffff" }), "XFAM"},
		{"TCB too low", tdxWith(policy, func(p *TDXPolicy) { p.MinimumTeeTcbSvn = strings.Repeat("ff", 16) }), "TCB too low"},
		// Finding 17 of the attack review: the TDX policy checked nothing
		// beyond DEBUG, MRTD, RTMRs, XFAM and the TCB.
		{"other MRCONFIGID", tdxWith(policy, func(p *TDXPolicy) { p.MRConfigIDs = []string{strings.Repeat("1", 96)} }), "MRCONFIGID"},
		{"other MROWNER", tdxWith(policy, func(p *TDXPolicy) { p.MROwner = strings.Repeat("1", 96) }), "MROWNER"},
		{"other TDX module", tdxWith(policy, func(p *TDXPolicy) { p.MRSeams = []string{strings.Repeat("1", 96)} }), "MRSEAM"},
		{"attributes refused by default", Attestation{TDX: &TDXPolicy{MRTDs: policy.MRTDs, AllowDebug: true}}, attributeRefusal(c)},
		{"role without tdx", Attestation{SNP: &SNPPolicy{Measurements: policy.MRTDs}}, `platform "tdx" is not accepted`},
	}
	for _, tt := range tests {
		if err := c.Satisfies(tt.p); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if c.Debug {
		if err := c.Satisfies(Attestation{TDX: &TDXPolicy{MRTDs: policy.MRTDs}}); err == nil {
			t.Error("a debuggable TD accepted by a role that does not allow debug")
		}
	}

	var other [64]byte
	if _, err := (&Verifier{Now: at}).Verify(context.Background(), ev, other); err == nil || !strings.Contains(err.Error(), "does not match this enrolment") {
		t.Fatalf("other report data: %v", err)
	}
	tampered := append([]byte(nil), testdata.RawQuote...)
	tampered[48+200] ^= 1 // inside the TD quote body, which the QE signed
	if _, err := (&Verifier{Now: at}).Verify(context.Background(), Evidence{Platform: PlatformTDX, Data: tampered}, rd); err == nil {
		t.Fatal("tampered quote verified")
	}
}

// TestTDXCollateral: with Intel's collateral the quote's TCB status is checked
// too. go-tdx-guest ships collateral whose TCB levels are newer than its sample
// quote, so the real outcome for that pair is "no matching TCB level": the
// platform is out of date, which off-line verification cannot see. Collateral
// past its next update is refused as such.
func TestTDXCollateral(t *testing.T) {
	when := time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC)
	at := func() time.Time { return when }
	q, _ := tdxabi.QuoteToProto(testdata.RawQuote)
	var rd [64]byte
	copy(rd[:], q.(*tdxpb.QuoteV4).GetTdQuoteBody().GetReportData())
	ev := Evidence{Platform: PlatformTDX, Data: testdata.RawQuote}
	dir := t.TempDir()
	ctx := context.Background()

	if _, err := (&Verifier{Now: at}).Verify(context.Background(), ev, rd); err != nil {
		t.Fatalf("off-line (no TCB status): %v", err)
	}
	if _, err := (&Verifier{Now: at, TDXCollateral: &CollateralCache{Dir: dir}}).Verify(ctx, ev, rd); err == nil || !strings.Contains(err.Error(), "fetching from Intel is off") {
		t.Fatalf("empty collateral cache: %v", err)
	}
	const outOfDate = "no matching TCB level found"
	if _, err := (&Verifier{Now: at, TDXCollateral: &CollateralCache{Dir: dir, Next: tdxtest.TestGetter}}).Verify(ctx, ev, rd); err == nil || !strings.Contains(err.Error(), outOfDate) {
		t.Fatalf("with collateral: %v, want %q", err, outOfDate)
	}
	// The same answer from the cache alone: what was fetched was kept.
	if _, err := (&Verifier{Now: at, TDXCollateral: &CollateralCache{Dir: dir}}).Verify(ctx, ev, rd); err == nil || !strings.Contains(err.Error(), outOfDate) {
		t.Fatalf("with collateral from the cache: %v, want %q", err, outOfDate)
	}
	when = time.Date(2053, time.July, 1, 1, 0, 0, 0, time.UTC)
	if _, err := (&Verifier{Now: at, TDXCollateral: &CollateralCache{Dir: dir}}).Verify(ctx, ev, rd); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("collateral past its next update: %v", err)
	}
}

// crasherQuote is go-tdx-guest's sample quote with its signed data's size
// (0x278, 32-bit little endian) set to 16: v0.3.1's parser then slices the
// signature out of 16 bytes and panics. Three bytes differ from the sample.
func crasherQuote() []byte {
	q := append([]byte(nil), testdata.RawQuote...)
	copy(q[0x278:], []byte{16, 0, 0, 0})
	return q
}

// TestMalformedTDXQuote: quotes whose length fields lie are refused with an
// error, never a panic (before, the first case crashed every client that
// verified a server's evidence). go-tdx-guest's own parser panics on them,
// which the first subtest shows, so the check here is what stands between.
func TestMalformedTDXQuote(t *testing.T) {
	q := crasherQuote()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("go-tdx-guest parses the crasher without panicking: checkTDXLayout may be redundant now")
			}
		}()
		tdxabi.QuoteToProto(q)
	}()

	authTooLong := append([]byte(nil), testdata.RawQuote...)
	// The QE authentication data's size: header, body, size, signature, key,
	// certification type and size, QE report and its signature.
	copy(authTooLong[0x27c+0x80+6+0x1c0:], []byte{0xff, 0xff})
	certTooLong := append([]byte(nil), testdata.RawQuote...)
	copy(certTooLong[0x27c+0x80+2:], []byte{0xff, 0xff, 0xff, 0x7f})
	tests := []struct {
		name string
		data []byte
	}{
		{"signed data shorter than its signature", q},
		{"QE authentication data past the end", authTooLong},
		{"certification data past the end", certTooLong},
		{"empty", nil},
		{"header only", testdata.RawQuote[:0x30]},
		{"truncated", testdata.RawQuote[:len(testdata.RawQuote)-1]},
		{"too large", make([]byte, 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(Evidence{Platform: PlatformTDX, Data: tt.data}, [64]byte{})
			if err == nil {
				t.Fatal("verified")
			}
		})
	}
	if err := checkTDXLayout(testdata.RawQuote); err != nil {
		t.Fatalf("the sample quote: %v", err)
	}
}

// TestVerifyRecovers: a panic below Verify is an error, not a crash.
func TestVerifyRecovers(t *testing.T) {
	at := func() time.Time { panic("a verifier's bug") }
	_, err := (&Verifier{Now: at}).Verify(context.Background(), Evidence{Platform: PlatformTDX, Data: testdata.RawQuote}, [64]byte{})
	if err == nil || !strings.Contains(err.Error(), "made the verifier fail") {
		t.Fatalf("got %v", err)
	}
	_, err = (&Verifier{Now: at}).Verify(context.Background(), Evidence{Platform: PlatformSimulated, Data: []byte{1}}, [64]byte{})
	if err == nil {
		t.Fatal("garbage verified")
	}
}

// tdxWith is a copy of p changed by set, as an attestation block.
func tdxWith(p *TDXPolicy, set func(*TDXPolicy)) Attestation {
	q := *p
	set(&q)
	return Attestation{TDX: &q}
}

// attributeRefusal is what a default policy says of c's TD attributes.
func attributeRefusal(c *Claims) string {
	switch {
	case !c.SeptVEDisable:
		return "SEPT_VE_DISABLE"
	case c.Migratable:
		return "migration"
	}
	return "(the sample quote's attributes are all accepted by default: this case cannot be tested)"
}

// Each TD attribute bit the policy reads comes from its own bit.
func TestTDXAttributeBits(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		attrs                 []byte
		debug, septVE, migrat bool
	}{
		{"none", []byte{0, 0, 0, 0, 0, 0, 0, 0}, false, false, false},
		{"debug", []byte{1, 0, 0, 0, 0, 0, 0, 0}, true, false, false},
		{"sept ve disable", []byte{0, 0, 0, 1 << 4, 0, 0, 0, 0}, false, true, false},
		{"migratable", []byte{0, 0, 0, 1 << 5, 0, 0, 0, 0}, false, false, true},
	} {
		c := tdxAttributes(tc.attrs)
		if c.Debug != tc.debug || c.SeptVEDisable != tc.septVE || c.Migratable != tc.migrat {
			t.Errorf("%s: debug %v, SEPT_VE_DISABLE %v, migratable %v", tc.name, c.Debug, c.SeptVEDisable, c.Migratable)
		}
	}
	good := &Claims{Platform: "tdx", Measurement: strings.Repeat("a", 96), SeptVEDisable: true}
	p := Attestation{TDX: &TDXPolicy{MRTDs: []string{good.Measurement}}}
	if err := good.Satisfies(p); err != nil {
		t.Fatalf("a TD with SEPT_VE_DISABLE, not migratable: %v", err)
	}
	for _, c := range []*Claims{
		{Platform: "tdx", Measurement: good.Measurement},
		{Platform: "tdx", Measurement: good.Measurement, SeptVEDisable: true, Migratable: true},
	} {
		if err := c.Satisfies(p); err == nil {
			t.Errorf("%+v accepted by a default policy", c)
		}
	}
}
