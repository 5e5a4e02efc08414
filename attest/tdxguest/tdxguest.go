// Package tdxguest is the issuer inside an Intel TDX guest: quotes from the
// guest's quote provider (configfs-tsm).
package tdxguest

import (
	"bytes"
	"fmt"

	tdxabi "github.com/google/go-tdx-guest/abi"
	"github.com/google/go-tdx-guest/client"
	tdxpb "github.com/google/go-tdx-guest/proto/tdx"

	"github.com/sealmesh/sealmesh/attest"
)

// QuoteProvider is go-tdx-guest's quote provider interface, as far as sealmesh
// needs it.
type QuoteProvider interface {
	IsSupported() error
	GetRawQuote(reportData [64]byte) ([]uint8, error)
}

// Guest produces TDX quotes.
type Guest struct {
	qp QuoteProvider
}

// Open finds the guest's configfs-tsm quote provider. It fails outside a TD.
func Open() (*Guest, error) {
	qp, err := client.GetQuoteProvider()
	if err != nil {
		return nil, fmt.Errorf("tdx: %w", err)
	}
	if err := qp.IsSupported(); err != nil {
		return nil, fmt.Errorf("tdx: no TDX quote provider (configfs-tsm): not running in a TD (%v)", err)
	}
	return New(qp), nil
}

// New wraps a quote provider.
func New(qp QuoteProvider) *Guest { return &Guest{qp: qp} }

// Platform implements attest.Issuer.
func (g *Guest) Platform() string { return attest.PlatformTDX }

// Evidence implements attest.Issuer: the raw quote, whose TD report data is
// reportData.
func (g *Guest) Evidence(reportData [64]byte) (attest.Evidence, error) {
	q, err := g.qp.GetRawQuote(reportData)
	if err != nil {
		return attest.Evidence{}, fmt.Errorf("tdx: quote: %w", err)
	}
	// Catch a provider that answers with nothing or with another request's
	// quote here, with a clear error, rather than at the coordinator.
	parsed, err := tdxabi.QuoteToProto(q)
	if err != nil {
		return attest.Evidence{}, fmt.Errorf("tdx: the quote provider returned no valid quote: %w", err)
	}
	v4, ok := parsed.(*tdxpb.QuoteV4)
	if !ok || !bytes.Equal(v4.GetTdQuoteBody().GetReportData(), reportData[:]) {
		return attest.Evidence{}, fmt.Errorf("tdx: the quote provider returned a quote for other report data")
	}
	return attest.Evidence{Platform: attest.PlatformTDX, Data: q}, nil
}

var _ attest.Issuer = (*Guest)(nil)
