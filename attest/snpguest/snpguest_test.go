package snpguest_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	labi "github.com/google/go-sev-guest/client/linuxabi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevtest "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	"google.golang.org/protobuf/proto"

	"github.com/sealmesh/sealmesh/attest/snpguest"
)

// The guest device is go-sev-guest's fake (there is no SNP hardware here); its
// reports are signed by a test chain, checked below by go-sev-guest's real
// verifier trusting that chain's root: only the trust root is fake.
func TestGuestEvidenceAndSealingKey(t *testing.T) {
	var rd [64]byte
	copy(rd[:], "sealmesh report data")
	raw := sevtest.CreateRawReport(&sevtest.TestReportOptions{ReportData: rd[:]})
	now := time.Now()
	signer, err := sevtest.DefaultTestOnlyCertChain("Milan-B0", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	opts := &sevtest.DeviceOptions{Now: now, Signer: signer, Product: abi.DefaultSevProduct(), Keys: map[string][]byte{}}
	req := snpguest.SealingRequest
	want := bytes.Repeat([]byte{0x5e}, 32)
	opts.Keys[sevtest.DerivedKeyRequestToString(&labi.SnpDerivedKeyReqABI{
		RootKeySelect: 0, GuestFieldSelect: req.GuestFieldSelect.ABI(), Vmpl: req.Vmpl, GuestSVN: req.GuestSVN, TCBVersion: req.TCBVersion,
	})] = want
	tcs := []sevtest.TestCase{{Name: "sealmesh", Input: rd, Output: raw}}
	qp, err := sevtest.TcQuoteProvider(tcs, opts)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := sevtest.TcDevice(tcs, opts)
	if err != nil {
		t.Fatal(err)
	}
	g := snpguest.New(qp, dev)

	ev, err := g.Evidence(rd)
	if err != nil {
		t.Fatal(err)
	}
	var att spb.Attestation
	if err := proto.Unmarshal(ev.Data, &att); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(att.GetReport().GetReportData(), rd[:]) || len(att.GetCertificateChain().GetVcekCert()) == 0 {
		t.Fatalf("evidence lacks the report data or the VCEK: %+v", att.GetCertificateChain())
	}
	root := trust.AMDRootCertsProduct("Milan")
	root.ProductCerts = &trust.ProductCerts{Ark: signer.Ark, Ask: signer.Ask}
	if err := verify.SnpAttestation(&att, &verify.Options{DisableCertFetching: true, Now: now,
		TrustedRoots: map[string][]*trust.AMDRootCerts{"Milan": {root}}}); err != nil {
		t.Fatalf("the guest's evidence does not verify: %v", err)
	}

	key, err := g.SealingKey()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, want) {
		t.Fatalf("sealing key %x: the request was not VCEK-rooted with measurement and policy mixed in", key)
	}
	if _, err := snpguest.New(qp, nil).SealingKey(); err == nil {
		t.Fatal("a sealing key without the guest device")
	}
}
