package attest

import (
	"crypto/x509"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

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
func verifyTDX(ev Evidence, reportData [64]byte, collateral tdxtrust.HTTPSGetter, now time.Time) (*Claims, error) {
	// go-tdx-guest v0.3.1 slices by the quote's own length fields before it
	// checks them: a few changed bytes made it panic in every client that
	// parsed a server's evidence. Check the layout first.
	if err := checkTDXLayout(ev.Data); err != nil {
		return nil, fmt.Errorf("attest: tdx evidence is not a TDX quote: %w", err)
	}
	q, err := tdxabi.QuoteToProto(ev.Data)
	if err != nil {
		return nil, fmt.Errorf("attest: tdx evidence is not a TDX quote: %w", err)
	}
	quote, ok := q.(*tdxpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("attest: tdx evidence is a %T, want a v4 quote", q)
	}
	// A fresh Options per call: the library writes into it.
	opts := &tdxverify.Options{Now: now, TrustedRoots: intelRoots}
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
	attrs := tdxAttributes(body.GetTdAttributes())
	c := &Claims{
		Platform:    "tdx",
		Measurement: hex.EncodeToString(body.GetMrTd()),
	}
	c.Debug, c.SeptVEDisable, c.Migratable = attrs.Debug, attrs.SeptVEDisable, attrs.Migratable
	c.MRConfigID = hex.EncodeToString(body.GetMrConfigId())
	c.MROwner = hex.EncodeToString(body.GetMrOwner())
	c.MRSeam = hex.EncodeToString(body.GetMrSeam())
	c.Xfam = hex.EncodeToString(body.GetXfam())
	c.TeeTcbSvn = hex.EncodeToString(body.GetTeeTcbSvn())
	for _, r := range body.GetRtmrs() {
		c.RTMRs = append(c.RTMRs, hex.EncodeToString(r))
	}
	return c, nil
}

// tdxAttributes reads the TD attributes (a little-endian 64-bit field):
// DEBUG is bit 0 (the host can read the TD; the library's validator does not
// refuse it, Satisfies does per role), SEPT_VE_DISABLE bit 28, MIGRATABLE
// bit 29.
func tdxAttributes(a []byte) Claims {
	var c Claims
	if len(a) >= 1 {
		c.Debug = a[0]&1 != 0
	}
	if len(a) >= 4 {
		c.SeptVEDisable, c.Migratable = a[3]&(1<<4) != 0, a[3]&(1<<5) != 0
	}
	return c
}

// The v4 quote's layout (Intel TDX DCAP Quoting Library API, appendix A), as
// go-tdx-guest v0.3.1 reads it: header and TD quote body, the signed data's
// size, then the signed data: signature, attestation key, certification data
// (type, size, QE report, its signature, QE authentication data with a 16-bit
// size, PCK certificate chain with type and size).
const (
	tdxSignedSizeAt   = 0x278
	tdxSignedAt       = 0x27c
	tdxCertDataAt     = 0x80 // in the signed data
	tdxQEAuthAt       = 0x1c0
	tdxSizedHeaderLen = 6 // a 16-bit type and a 32-bit size
	tdxMaxQuote       = 64 << 10
)

var errTDXLayout = errors.New("malformed quote")

// checkTDXLayout checks every length field of a v4 quote against the bytes
// there are, so that the library's parser never slices out of bounds.
func checkTDXLayout(b []byte) error {
	switch {
	case len(b) < tdxabi.QuoteMinSize:
		return fmt.Errorf("%w: %d bytes, a v4 quote has at least %d", errTDXLayout, len(b), tdxabi.QuoteMinSize)
	case len(b) > tdxMaxQuote:
		return fmt.Errorf("%w: %d bytes, more than %d", errTDXLayout, len(b), tdxMaxQuote)
	}
	signedSize := uint64(binary.LittleEndian.Uint32(b[tdxSignedSizeAt:]))
	if signedSize > uint64(len(b)-tdxSignedAt) {
		return fmt.Errorf("%w: signed data of %d bytes, %d follow", errTDXLayout, signedSize, len(b)-tdxSignedAt)
	}
	signed := b[tdxSignedAt : tdxSignedAt+signedSize]
	if len(signed) < tdxCertDataAt+tdxSizedHeaderLen {
		return fmt.Errorf("%w: signed data of %d bytes is too short", errTDXLayout, len(signed))
	}
	cert := signed[tdxCertDataAt:]
	if n := uint64(binary.LittleEndian.Uint32(cert[2:])); n != uint64(len(cert)-tdxSizedHeaderLen) {
		return fmt.Errorf("%w: certification data says %d bytes, %d follow", errTDXLayout, n, len(cert)-tdxSizedHeaderLen)
	}
	qe := cert[tdxSizedHeaderLen:]
	if len(qe) < tdxQEAuthAt+2 {
		return fmt.Errorf("%w: QE certification data of %d bytes is too short", errTDXLayout, len(qe))
	}
	pck := tdxQEAuthAt + 2 + int(binary.LittleEndian.Uint16(qe[tdxQEAuthAt:]))
	if len(qe) < pck+tdxSizedHeaderLen {
		return fmt.Errorf("%w: QE authentication data runs past the certification data", errTDXLayout)
	}
	return nil
}
