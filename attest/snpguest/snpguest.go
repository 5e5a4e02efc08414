// Package snpguest is the issuer inside a real AMD SEV-SNP guest: evidence from
// the guest's quote provider (configfs-tsm or /dev/sev-guest) with the
// certificate chain attached, and a sealing key the AMD-SP derives for this chip
// and launch measurement.
package snpguest

import (
	"errors"
	"fmt"

	"github.com/google/go-sev-guest/client"
	"google.golang.org/protobuf/proto"

	"github.com/sealmesh/sealmesh/attest"
)

// Guest is an SNP guest's attestation and key derivation.
type Guest struct {
	qp  client.QuoteProvider
	dev client.Device
}

// Open finds the guest's SNP interfaces. It fails outside an SNP guest.
func Open() (*Guest, error) {
	qp, err := client.GetQuoteProvider()
	if err != nil || !qp.IsSupported() {
		return nil, fmt.Errorf("snp: no SEV-SNP guest interface (configfs-tsm or /dev/sev-guest): not running in an SNP guest (%v)", err)
	}
	dev, err := client.OpenDevice()
	if err != nil {
		// Evidence still works through configfs-tsm; sealing needs the device.
		dev = nil
	}
	return New(qp, dev), nil
}

// New wraps a quote provider and (for sealing keys) a guest device.
func New(qp client.QuoteProvider, dev client.Device) *Guest { return &Guest{qp: qp, dev: dev} }

// Platform implements attest.Issuer.
func (g *Guest) Platform() string { return attest.PlatformSNP }

// Evidence implements attest.Issuer.
func (g *Guest) Evidence(reportData [64]byte) (attest.Evidence, error) {
	att, err := client.GetQuoteProto(g.qp, reportData)
	if err != nil {
		return attest.Evidence{}, fmt.Errorf("snp: report: %w", err)
	}
	b, err := proto.Marshal(att)
	if err != nil {
		return attest.Evidence{}, err
	}
	return attest.Evidence{Platform: attest.PlatformSNP, Data: b}, nil
}

// SealingRequest is the derived-key request sealmesh makes: rooted in the VCEK (so
// it is the same for every launch of this image on this chip, unlike the
// per-launch VMRK) and mixing in the launch measurement and guest policy, so
// another image or a debug launch derives another key. A firmware update that
// changes the VCEK changes the key: recover from a peer or a seed share then.
var SealingRequest = client.SnpDerivedKeyReq{
	UseVCEK:          true,
	GuestFieldSelect: client.GuestFieldSelect{Measurement: true, GuestPolicy: true},
}

// SealingKey implements attest.Sealer.
func (g *Guest) SealingKey() ([]byte, error) {
	if g.dev == nil {
		return nil, errors.New("snp: no /dev/sev-guest: derived keys need the guest device")
	}
	req := SealingRequest
	resp, err := client.GetDerivedKeyAcknowledgingItsLimitations(g.dev, &req)
	if err != nil {
		return nil, fmt.Errorf("snp: derived key: %w", err)
	}
	if resp.Status != 0 {
		return nil, fmt.Errorf("snp: derived key: firmware status %#x", resp.Status)
	}
	return resp.Data[:], nil
}

var (
	_ attest.Issuer = (*Guest)(nil)
	_ attest.Sealer = (*Guest)(nil)
)
