package attest

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevdata "github.com/google/go-sev-guest/verify/testdata"
	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxdata "github.com/google/go-tdx-guest/testing/testdata"
	"google.golang.org/protobuf/proto"
)

// BenchmarkVerify is one evidence verification (chain, signature, report data)
// of the real samples the libraries ship (simulated: BenchmarkVerifySimulated).
func BenchmarkVerify(b *testing.B) {
	b.Run("snp", func(b *testing.B) {
		v := &Verifier{Now: func() time.Time { return time.Date(2022, time.September, 24, 1, 0, 0, 0, time.UTC) }}
		r, err := abi.ReportToProto(sevdata.AttestationBytes)
		if err != nil {
			b.Fatal(err)
		}
		data, _ := proto.Marshal(&spb.Attestation{Report: r, CertificateChain: &spb.CertificateChain{VcekCert: sevdata.VcekBytes}})
		var rd [64]byte
		copy(rd[:], r.GetReportData())
		ev := Evidence{Platform: PlatformSNP, Data: data}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := v.Verify(context.Background(), ev, rd); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tdx", func(b *testing.B) {
		v := &Verifier{Now: func() time.Time { return time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC) }}
		q, err := tdxabi.QuoteToProto(tdxdata.RawQuote)
		if err != nil {
			b.Fatal(err)
		}
		var rd [64]byte
		copy(rd[:], q.(*tdxpb.QuoteV4).GetTdQuoteBody().GetReportData())
		ev := Evidence{Platform: PlatformTDX, Data: tdxdata.RawQuote}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := v.Verify(context.Background(), ev, rd); err != nil {
				b.Fatal(err)
			}
		}
	})
}
