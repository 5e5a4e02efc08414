package tdxguest_test

import (
	"bytes"
	"testing"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxtest "github.com/google/go-tdx-guest/testing"
	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/tdxguest"
)

// The TD's quote provider is go-tdx-guest's fake (no TDX hardware here),
// answering with the real quote it ships for that quote's own report data.
func TestGuestEvidence(t *testing.T) {
	q, err := tdxabi.QuoteToProto(testdata.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	copy(rd[:], q.(*tdxpb.QuoteV4).GetTdQuoteBody().GetReportData())
	qp, err := tdxtest.TcQuoteProvider([]tdxtest.TestCase{{Name: "sample", Input: rd, Quote: testdata.RawQuote}})
	if err != nil {
		t.Fatal(err)
	}
	g := tdxguest.New(qp)
	ev, err := g.Evidence(rd)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Platform != attest.PlatformTDX || !bytes.Equal(ev.Data, testdata.RawQuote) {
		t.Fatalf("evidence %s, %d bytes", ev.Platform, len(ev.Data))
	}
	if _, err := g.Evidence([64]byte{1}); err == nil {
		t.Fatal("a quote for report data the provider was not asked for")
	}
}
