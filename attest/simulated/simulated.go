// Package simulated is a development TEE: it signs SEV-SNP-shaped reports with a
// certificate chain shaped like AMD's (RSA-PSS ARK and ASK, P-384 VCEK with the KDS
// extensions), so that evidence goes through go-sev-guest's real verification. Its
// root is a key pair made here, so it proves nothing about hardware; a manifest
// must opt in by naming `simulated` for a role and pinning this root's fingerprint.
//
// This is written for sealmesh rather than taken from go-sev-guest's testing
// package, which registers global flags and must stay out of production binaries.
package simulated

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"google.golang.org/protobuf/proto"

	"github.com/sealmesh/sealmesh/attest"
)

// The simulated chip is a Milan; the product line decides the certificate names and
// CRL links the verifier expects.
const (
	productLine = "Milan"
	productName = "Milan-B0"
)

// Device is one simulated SNP guest: a chip key (VCEK) with its chain and the launch
// measurement it reports.
type Device struct {
	Ark, Ask, Vcek *x509.Certificate
	vcekKey        *ecdsa.PrivateKey
	Measurement    [abi.MeasurementSize]byte
}

// New makes a fresh simulated root, chip and guest with the given measurement.
// It generates two RSA-4096 keys and takes a second or two.
func New(measurement [abi.MeasurementSize]byte) (*Device, error) {
	notBefore := time.Now().Add(-time.Hour)
	arkKey, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		return nil, fmt.Errorf("simulated: ARK key: %w", err)
	}
	askKey, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		return nil, fmt.Errorf("simulated: ASK key: %w", err)
	}
	vcekKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("simulated: VCEK key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	arkName := amdName("ARK-"+productLine, fmt.Sprintf("%x", serial))
	arkTmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               arkName,
		Issuer:                arkName,
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(25 * 365 * 24 * time.Hour),
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		CRLDistributionPoints: []string{kds.CrlLinkByRole(productLine, "ARK")},
	}
	ark, err := sign(arkTmpl, arkTmpl, &arkKey.PublicKey, arkKey)
	if err != nil {
		return nil, fmt.Errorf("simulated: ARK certificate: %w", err)
	}
	askTmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               amdName("SEV-"+productLine, fmt.Sprintf("%x", serial)),
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(25 * 365 * 24 * time.Hour),
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		CRLDistributionPoints: []string{kds.CrlLinkByRole(productLine, "ASK")},
	}
	ask, err := sign(askTmpl, ark, &askKey.PublicKey, arkKey)
	if err != nil {
		return nil, fmt.Errorf("simulated: ASK certificate: %w", err)
	}
	vcekTmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(1),
		Subject:            amdName("SEV-VCEK", "1"),
		NotBefore:          notBefore,
		NotAfter:           notBefore.Add(7 * 365 * 24 * time.Hour),
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
		ExtraExtensions:    vcekExtensions(),
	}
	vcek, err := sign(vcekTmpl, ask, &vcekKey.PublicKey, askKey)
	if err != nil {
		return nil, fmt.Errorf("simulated: VCEK certificate: %w", err)
	}
	return &Device{Ark: ark, Ask: ask, Vcek: vcek, vcekKey: vcekKey, Measurement: measurement}, nil
}

func sign(tmpl, parent *x509.Certificate, pub any, key *rsa.PrivateKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// amdName is the subject AMD's key distribution service puts on its certificates;
// the verifier checks every field.
func amdName(cn, serial string) pkix.Name {
	return pkix.Name{
		CommonName:         cn,
		SerialNumber:       serial,
		Organization:       []string{"Advanced Micro Devices"},
		OrganizationalUnit: []string{"Engineering"},
		Locality:           []string{"Santa Clara"},
		Province:           []string{"CA"},
		Country:            []string{"US"},
	}
}

// vcekExtensions are the KDS extensions of a VCEK: structure version, product name,
// the TCB security patch levels (all zero, matching the reports), and the chip id.
func vcekExtensions() []pkix.Extension {
	mustInt := func(v int) []byte { b, _ := asn1.Marshal(v); return b }
	name, _ := asn1.MarshalWithParams(productName, "ia5")
	hwid, _ := asn1.Marshal(make([]byte, abi.ChipIDSize))
	exts := []pkix.Extension{
		{Id: kds.OidStructVersion, Value: mustInt(0)},
		{Id: kds.OidProductName1, Value: name},
	}
	for _, oid := range []asn1.ObjectIdentifier{kds.OidBlSpl, kds.OidTeeSpl, kds.OidSnpSpl, kds.OidSpl4, kds.OidSpl5, kds.OidSpl6, kds.OidSpl7, kds.OidUcodeSpl} {
		exts = append(exts, pkix.Extension{Id: oid, Value: mustInt(0)})
	}
	return append(exts, pkix.Extension{Id: kds.OidHwid, Value: hwid})
}

// Platform implements attest.Issuer.
func (d *Device) Platform() string { return attest.PlatformSimulated }

// RootFingerprint is the hex SHA-256 of the ARK certificate: what a manifest pins.
func (d *Device) RootFingerprint() string {
	sum := sha256.Sum256(d.Ark.Raw)
	return hex.EncodeToString(sum[:])
}

// Evidence implements attest.Issuer: a version 2 report with the given report data,
// signed by the VCEK as an AMD-SP signs it (ECDSA P-384 over SHA-384, R and S little
// endian), with the certificate chain attached.
func (d *Device) Evidence(reportData [64]byte) (attest.Evidence, error) {
	return d.evidence(reportData, false)
}

// DebugEvidence is Evidence from a guest launched with the debug policy bit; tests
// use it to show such guests are refused unless a role allows them.
func (d *Device) DebugEvidence(reportData [64]byte) (attest.Evidence, error) {
	return d.evidence(reportData, true)
}

func (d *Device) evidence(reportData [64]byte, debug bool) (attest.Evidence, error) {
	raw := make([]byte, abi.ReportSize)
	binary.LittleEndian.PutUint32(raw[0x00:], 2) // report version
	binary.LittleEndian.PutUint64(raw[0x08:], abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, Debug: debug}))
	binary.LittleEndian.PutUint32(raw[0x34:], abi.SignEcdsaP384Sha384)
	binary.LittleEndian.PutUint32(raw[0x48:], abi.ComposeSignerInfo(abi.SignerInfo{SigningKey: abi.VcekReportSigner}))
	copy(raw[0x50:0x90], reportData[:])
	copy(raw[0x90:0xC0], d.Measurement[:])

	digest := sha512.Sum384(abi.SignedComponent(raw))
	r, s, err := ecdsa.Sign(rand.Reader, d.vcekKey, digest[:])
	if err != nil {
		return attest.Evidence{}, fmt.Errorf("simulated: sign report: %w", err)
	}
	if err := abi.SetSignature(r, s, raw); err != nil {
		return attest.Evidence{}, fmt.Errorf("simulated: set signature: %w", err)
	}
	report, err := abi.ReportToProto(raw)
	if err != nil {
		return attest.Evidence{}, fmt.Errorf("simulated: report: %w", err)
	}
	data, err := proto.Marshal(&spb.Attestation{
		Report: report,
		CertificateChain: &spb.CertificateChain{
			ArkCert:  d.Ark.Raw,
			AskCert:  d.Ask.Raw,
			VcekCert: d.Vcek.Raw,
		},
	})
	if err != nil {
		return attest.Evidence{}, fmt.Errorf("simulated: marshal: %w", err)
	}
	return attest.Evidence{Platform: d.Platform(), Data: data}, nil
}

// Files of a saved device. The VCEK key stands for the chip's secret; the ARK and
// ASK keys are thrown away once the chain is made, as no more chips are needed.
const (
	fileArk         = "ark.pem"
	fileAsk         = "ask.pem"
	fileVcek        = "vcek.pem"
	fileVcekKey     = "vcek-key.pem"
	fileMeasurement = "measurement"
)

// Save writes the device to dir (created, mode 0700).
func (d *Device) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("simulated: %w", err)
	}
	key, err := x509.MarshalPKCS8PrivateKey(d.vcekKey)
	if err != nil {
		return fmt.Errorf("simulated: VCEK key: %w", err)
	}
	files := map[string][]byte{
		fileArk:         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.Ark.Raw}),
		fileAsk:         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.Ask.Raw}),
		fileVcek:        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.Vcek.Raw}),
		fileVcekKey:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
		fileMeasurement: []byte(hex.EncodeToString(d.Measurement[:]) + "\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return fmt.Errorf("simulated: %w", err)
		}
	}
	return nil
}

// Load reads a device saved by Save.
func Load(dir string) (*Device, error) {
	read := func(name, typ string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("simulated device %s: %w (create one with: meshctl sim-tee init --dir %s)", dir, err, dir)
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != typ {
			return nil, fmt.Errorf("simulated device %s: %s is not a PEM %s", dir, name, typ)
		}
		return blk.Bytes, nil
	}
	d := &Device{}
	for _, c := range []struct {
		name string
		dst  **x509.Certificate
	}{{fileArk, &d.Ark}, {fileAsk, &d.Ask}, {fileVcek, &d.Vcek}} {
		der, err := read(c.name, "CERTIFICATE")
		if err != nil {
			return nil, err
		}
		if *c.dst, err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("simulated device %s: %s: %w", dir, c.name, err)
		}
	}
	der, err := read(fileVcekKey, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("simulated device %s: VCEK key: %w", dir, err)
	}
	var ok bool
	if d.vcekKey, ok = k.(*ecdsa.PrivateKey); !ok {
		return nil, fmt.Errorf("simulated device %s: VCEK key is not ECDSA", dir)
	}
	mb, err := os.ReadFile(filepath.Join(dir, fileMeasurement))
	if err != nil {
		return nil, fmt.Errorf("simulated device %s: %w", dir, err)
	}
	m, err := ParseMeasurement(strings.TrimSpace(string(mb)))
	if err != nil {
		return nil, fmt.Errorf("simulated device %s: %w", dir, err)
	}
	d.Measurement = m
	return d, nil
}

// SealingKey stands for the key an SNP guest asks its AMD-SP for
// (MSG_KEY_REQ): bound to the chip's secret and the guest's measurement, so
// another image or another chip gets another key.
func (d *Device) SealingKey() ([]byte, error) {
	secret, err := d.vcekKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("simulated: chip secret: %w", err)
	}
	return hkdf.Key(sha256.New, secret, d.Measurement[:], "sealmesh simulated sev-snp derived key v1", 32)
}

// ParseMeasurement reads a 96-hex-character launch measurement.
func ParseMeasurement(s string) ([abi.MeasurementSize]byte, error) {
	var m [abi.MeasurementSize]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(m) {
		return m, errors.New("measurement: want 96 hex characters")
	}
	copy(m[:], b)
	return m, nil
}

// MeasurementOf derives a stable measurement from a name, for demos and tests where
// "the image named X" stands in for a real launch digest.
func MeasurementOf(name string) [abi.MeasurementSize]byte {
	return sha512.Sum384([]byte(name))
}
