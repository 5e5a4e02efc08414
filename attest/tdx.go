package attest

import (
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"fmt"

	tdxabi "github.com/google/go-tdx-guest/abi"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxvalidate "github.com/google/go-tdx-guest/validate"
	tdxverify "github.com/google/go-tdx-guest/verify"
	tdxtrust "github.com/google/go-tdx-guest/verify/trust"
)

// intelRootPEM is Intel's SGX Root CA (CN=Intel SGX Root CA, SHA-256
// 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3, valid to 2049),
// the root of every PCK chain; the same certificate go-tdx-guest embeds. Passing it
// explicitly keeps the library from logging a fallback warning on each quote.
//
//go:embed intel-sgx-root-ca.pem
var intelRootPEM []byte

var intelRoots = func() *x509.CertPool {
	blk, _ := pem.Decode(intelRootPEM)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		panic(fmt.Sprintf("attest: embedded Intel root: %v", err))
	}
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}()

// verifyTDX checks an Intel TDX quote (v4) with go-tdx-guest: the quote's
// signature and PCK chain to Intel's root, and that the TD's report data is
// reportData. With collateral (from a cache, or fetched where allowed) it also
// checks the platform's TCB status and the collateral's expiry.
func verifyTDX(ev Evidence, reportData [64]byte, collateral tdxtrust.HTTPSGetter) (*Claims, error) {
	q, err := tdxabi.QuoteToProto(ev.Data)
	if err != nil {
		return nil, fmt.Errorf("attest: tdx evidence is not a TDX quote: %w", err)
	}
	quote, ok := q.(*tdxpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("attest: tdx evidence is a %T, want a v4 quote", q)
	}
	// A fresh Options per call: the library writes into it.
	opts := &tdxverify.Options{Now: now(), TrustedRoots: intelRoots}
	if collateral != nil {
		opts.GetCollateral, opts.Getter = true, collateral
	}
	if err := tdxverify.TdxQuote(quote, opts); err != nil {
		return nil, fmt.Errorf("attest: tdx evidence signature: %w", err)
	}
	if err := tdxvalidate.TdxQuote(quote, &tdxvalidate.Options{TdQuoteBodyOptions: tdxvalidate.TdQuoteBodyOptions{ReportData: reportData[:]}}); err != nil {
		return nil, fmt.Errorf("attest: tdx evidence does not match this enrolment: %w", err)
	}
	body := quote.GetTdQuoteBody()
	c := &Claims{
		Platform:    "tdx",
		Measurement: hex.EncodeToString(body.GetMrTd()),
		// TD attributes bit 0: the TD is debuggable (the host can read it). The
		// library's validator does not refuse it; Satisfies does, per role.
		Debug: len(body.GetTdAttributes()) > 0 && body.GetTdAttributes()[0]&1 != 0,
	}
	c.Xfam = hex.EncodeToString(body.GetXfam())
	c.TeeTcbSvn = hex.EncodeToString(body.GetTeeTcbSvn())
	for _, r := range body.GetRtmrs() {
		c.RTMRs = append(c.RTMRs, hex.EncodeToString(r))
	}
	return c, nil
}
