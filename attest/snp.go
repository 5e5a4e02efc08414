package attest

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	"google.golang.org/protobuf/proto"
)

// verifySNP checks SNP-shaped evidence with go-sev-guest: VCEK chain to the root,
// report signature, report data, guest policy. Real SNP evidence is checked against
// the AMD roots the library ships; simulated evidence against the root in its own
// chain, which Claims.Satisfies then compares with the manifest's pin. Everything
// after the choice of root is the same code.
func verifySNP(ev Evidence, reportData [64]byte, simulated bool, certs trust.HTTPSGetter, now time.Time) (*Claims, error) {
	var att spb.Attestation
	if err := proto.Unmarshal(ev.Data, &att); err != nil {
		return nil, fmt.Errorf("attest: %s evidence is not an SNP attestation: %w", ev.Platform, err)
	}
	chain := att.GetCertificateChain()
	if att.GetReport() == nil {
		return nil, fmt.Errorf("attest: %s evidence lacks a report", ev.Platform)
	}
	if chain == nil {
		chain = &spb.CertificateChain{}
		att.CertificateChain = chain
	}
	if len(chain.GetVcekCert()) == 0 && certs == nil {
		return nil, fmt.Errorf("attest: %s evidence lacks its VCEK certificate, and this coordinator fetches none (--vcek-cache)", ev.Platform)
	}

	opts := &verify.Options{DisableCertFetching: true, Now: now}
	// A chain verified before (same root, intermediate and VCEK bytes, still
	// within its validity) is neither parsed nor verified again; the report's
	// own signature always is.
	ck := chainKey(simulated, chain)
	if len(chain.GetVcekCert()) == 0 {
		ck = [32]byte{} // nothing to key on before fetching: verify in full
	}
	known := chains.get(ck, opts.Now)
	if known != nil {
		if err := verify.SnpProtoReportSignature(att.GetReport(), known.vcek); err != nil {
			return nil, fmt.Errorf("attest: %s evidence signature: %w", ev.Platform, err)
		}
	} else {
		v, err := verifyChain(&att, simulated, certs, opts)
		if err != nil {
			return nil, fmt.Errorf("attest: %s evidence: %w", ev.Platform, err)
		}
		// Key on the VCEK actually verified (fetched ones included).
		chains.put(chainKey(simulated, att.GetCertificateChain()), v)
		known = v
	}

	// Debug and migration-agent policy bits become claims, refused per role
	// unless it allows them.
	vopts := &validate.Options{
		ReportData:  reportData[:],
		GuestPolicy: abi.SnpPolicy{Debug: true, SMT: true, MigrateMA: true},
	}
	if err := validate.SnpAttestation(&att, vopts); err != nil {
		return nil, fmt.Errorf("attest: %s evidence does not match this enrolment: %w", ev.Platform, err)
	}
	pol, err := abi.ParseSnpPolicy(att.GetReport().GetPolicy())
	if err != nil {
		return nil, fmt.Errorf("attest: %s guest policy: %w", ev.Platform, err)
	}
	fp := sha256.Sum256(known.root)
	r := att.GetReport()
	tcb := kds.DecomposeTCBVersion(kds.TCBVersion(r.GetReportedTcb()))
	return &Claims{
		Platform:        ev.Platform,
		Measurement:     hex.EncodeToString(r.GetMeasurement()),
		RootFingerprint: hex.EncodeToString(fp[:]),
		Debug:           pol.Debug,
		MigrationAgent:  pol.MigrateMA,
		HostData:        hex.EncodeToString(r.GetHostData()),
		FamilyID:        hex.EncodeToString(r.GetFamilyId()),
		ImageID:         hex.EncodeToString(r.GetImageId()),
		VMPL:            int(r.GetVmpl()),
		TCB:             SNPTCB{Bootloader: tcb.BlSpl, TEE: tcb.TeeSpl, SNP: tcb.SnpSpl, Microcode: tcb.UcodeSpl},
	}, nil
}

// verifyChain verifies the report with its whole chain, up to the evidence's
// own ARK (simulated: pinned later by the role) or AMD's embedded roots, and
// returns the VCEK and the root it chains to.
func verifyChain(att *spb.Attestation, simulated bool, certs trust.HTTPSGetter, opts *verify.Options) (*verifiedChain, error) {
	if certs != nil && !simulated {
		// Missing VCEK (and ASK/ARK) come from the cache, or from AMD when
		// allowed; they are verified against AMD's roots like any other.
		opts.DisableCertFetching, opts.Getter = false, certs
	}
	var rootDER []byte
	if simulated {
		roots, der, err := chainRoots(att.GetCertificateChain())
		if err != nil {
			return nil, err
		}
		opts.TrustedRoots = roots
		rootDER = der
	}
	if err := verify.SnpAttestation(att, opts); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	chain := att.GetCertificateChain()
	vcek, err := x509.ParseCertificate(chain.GetVcekCert())
	if err != nil {
		return nil, fmt.Errorf("VCEK certificate: %w", err)
	}
	if !simulated {
		// The library picked one of its embedded AMD roots; name it by the
		// product line's ARK so a policy may pin it too.
		line, err := productLine(chain.GetVcekCert())
		if err != nil {
			return nil, err
		}
		r, err := trust.GetDefaultRootCerts(line)
		if err != nil {
			return nil, fmt.Errorf("no AMD root for %s: %w", line, err)
		}
		rootDER = r.ProductCerts.Ark.Raw
	}
	return &verifiedChain{vcek: vcek, root: rootDER}, nil
}

// chainRoots takes the ARK and ASK from the evidence's own chain as the trust roots.
// Sound only together with the manifest's pin of the ARK (Claims.Satisfies).
func chainRoots(chain *spb.CertificateChain) (map[string][]*trust.AMDRootCerts, []byte, error) {
	ark, err := x509.ParseCertificate(chain.GetArkCert())
	if err != nil {
		return nil, nil, fmt.Errorf("ARK certificate: %w", err)
	}
	ask, err := x509.ParseCertificate(chain.GetAskCert())
	if err != nil {
		return nil, nil, fmt.Errorf("ASK certificate: %w", err)
	}
	line, err := productLine(chain.GetVcekCert())
	if err != nil {
		return nil, nil, err
	}
	root := trust.AMDRootCertsProduct(line)
	root.ProductCerts = &trust.ProductCerts{Ark: ark, Ask: ask}
	return map[string][]*trust.AMDRootCerts{line: {root}}, ark.Raw, nil
}

func productLine(vcekDER []byte) (string, error) {
	vcek, err := x509.ParseCertificate(vcekDER)
	if err != nil {
		return "", fmt.Errorf("VCEK certificate: %w", err)
	}
	exts, err := kds.VcekCertificateExtensions(vcek)
	if err != nil {
		return "", fmt.Errorf("VCEK certificate: %w", err)
	}
	product, err := kds.ParseProductName(exts.ProductName, abi.VcekReportSigner)
	if err != nil {
		return "", fmt.Errorf("VCEK product name %q: %w", exts.ProductName, err)
	}
	return kds.ProductLine(product), nil
}

// chains caches verified VCEK chains: the expensive, report-independent half of
// verification (parsing three certificates, two RSA and one ECDSA signature).
var chains = &chainCache{m: map[[32]byte]*verifiedChain{}}

type chainCache struct {
	mu sync.Mutex
	m  map[[32]byte]*verifiedChain
}

// verifiedChain is a VCEK whose chain verified, and the DER of the root
// (ARK) it chains to.
type verifiedChain struct {
	vcek *x509.Certificate
	root []byte
}

// chainKey names a chain by every certificate it trusts: for simulated evidence
// the ARK and ASK it carries (pinned later by the role), for real SNP AMD's
// embedded roots.
func chainKey(simulated bool, c *spb.CertificateChain) [32]byte {
	h := sha256.New()
	if simulated {
		h.Write([]byte("simulated\x00"))
		for _, b := range [][]byte{c.GetArkCert(), c.GetAskCert()} {
			var n [8]byte
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
	} else {
		h.Write([]byte("amd\x00"))
	}
	h.Write(c.GetVcekCert())
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}

func (c *chainCache) get(k [32]byte, now time.Time) *verifiedChain {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.m[k]
	if v == nil || now.Before(v.vcek.NotBefore) || now.After(v.vcek.NotAfter) {
		return nil
	}
	return v
}

func (c *chainCache) put(k [32]byte, v *verifiedChain) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= 4096 { // one entry per chip and TCB: a bound, not an LRU
		clear(c.m)
	}
	c.m[k] = v
}
