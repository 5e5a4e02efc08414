package attest_test

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"google.golang.org/protobuf/proto"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/test/tools"
)

var (
	devOnce sync.Once
	dev     *simulated.Device
	other   *simulated.Device
	devErr  error
)

// devices makes two simulated chips with different roots (RSA-4096 keys take a
// while, so once per test binary).
func devices(t *testing.T) (*simulated.Device, *simulated.Device) {
	t.Helper()
	devOnce.Do(func() {
		dev, devErr = simulated.New(simulated.MeasurementOf("web"))
		if devErr == nil {
			other, devErr = simulated.New(simulated.MeasurementOf("web"))
		}
	})
	if devErr != nil {
		t.Fatal(devErr)
	}
	return dev, other
}

func policyFor(d *simulated.Device, images ...string) attest.Attestation {
	p := &attest.SNPPolicy{RootFingerprint: d.RootFingerprint()}
	for _, im := range images {
		m := simulated.MeasurementOf(im)
		p.Measurements = append(p.Measurements, hex.EncodeToString(m[:]))
	}
	return attest.Attestation{Simulated: p}
}

func TestSimulatedEvidence(t *testing.T) {
	d, o := devices(t)
	rd := attest.ReportData([]byte("nonce"), []byte("pubkey"), nil)
	good, err := d.Evidence(rd)
	if err != nil {
		t.Fatal(err)
	}
	debug, err := d.DebugEvidence(rd)
	if err != nil {
		t.Fatal(err)
	}
	fromOther, err := o.Evidence(rd)
	if err != nil {
		t.Fatal(err)
	}
	tampered := tamperMeasurement(t, good)

	tests := []struct {
		name       string
		ev         attest.Evidence
		reportData [64]byte
		policy     attest.Attestation
		wantVerify string // error from Verify, "" for none
		wantPolicy string // error from Satisfies, "" for none
	}{
		{name: "accepted", ev: good, reportData: rd, policy: policyFor(d, "web")},
		{name: "wrong measurement", ev: good, reportData: rd, policy: policyFor(d, "db"), wantPolicy: "measurement"},
		{name: "bound to another key", ev: good, reportData: attest.ReportData([]byte("nonce"), []byte("other key"), nil), policy: policyFor(d, "web"), wantVerify: "does not match this enrolment"},
		{name: "bound to another nonce", ev: good, reportData: attest.ReportData([]byte("nonce2"), []byte("pubkey"), nil), policy: policyFor(d, "web"), wantVerify: "does not match this enrolment"},
		{name: "root not pinned", ev: fromOther, reportData: rd, policy: policyFor(d, "web"), wantPolicy: "the role pins"},
		{name: "role without simulated", ev: good, reportData: rd, policy: attest.Attestation{SNP: policyFor(d, "web").Simulated}, wantPolicy: `platform "simulated" is not accepted`},
		{name: "debug refused", ev: debug, reportData: rd, policy: policyFor(d, "web"), wantPolicy: "debug"},
		{name: "TCB too low", ev: good, reportData: rd, policy: with(policyFor(d, "web"), func(p *attest.SNPPolicy) { p.MinimumTCB = &attest.SNPTCB{SNP: 8} }), wantPolicy: "TCB too low"},
		{name: "TCB at the minimum", ev: good, reportData: rd, policy: with(policyFor(d, "web"), func(p *attest.SNPPolicy) { p.MinimumTCB = &attest.SNPTCB{} })},
		{name: "other host data", ev: good, reportData: rd, policy: with(policyFor(d, "web"), func(p *attest.SNPPolicy) { p.HostData = strings.Repeat("1", 64) }), wantPolicy: "host data"},
		{name: "other image ID", ev: good, reportData: rd, policy: with(policyFor(d, "web"), func(p *attest.SNPPolicy) { p.ImageID = strings.Repeat("2", 32) }), wantPolicy: "image ID"},
		{name: "other VMPL", ev: good, reportData: rd, policy: with(policyFor(d, "web"), func(p *attest.SNPPolicy) { v := 2; p.VMPL = &v }), wantPolicy: "VMPL"},
		{name: "report altered after signing", ev: tampered, reportData: rd, policy: policyFor(d, "web"), wantVerify: "signature"},
		{name: "garbage", ev: attest.Evidence{Platform: "simulated", Data: []byte("x")}, reportData: rd, wantVerify: "not an SNP attestation"},
		{name: "unknown platform", ev: attest.Evidence{Platform: "sgx"}, reportData: rd, wantVerify: "unknown platform"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := attest.Verify(tt.ev, tt.reportData)
			if !matches(err, tt.wantVerify) {
				t.Fatalf("Verify error = %v, want %q", err, tt.wantVerify)
			}
			if err != nil {
				return
			}
			if err := c.Satisfies(tt.policy); !matches(err, tt.wantPolicy) {
				t.Fatalf("Satisfies error = %v, want %q", err, tt.wantPolicy)
			}
		})
	}
}

func with(a attest.Attestation, f func(*attest.SNPPolicy)) attest.Attestation {
	c := *a.Simulated
	f(&c)
	return attest.Attestation{Simulated: &c}
}

func TestDebugAllowedWhenRoleSaysSo(t *testing.T) {
	d, _ := devices(t)
	rd := attest.ReportData([]byte("n"), []byte("k"), nil)
	ev, err := d.DebugEvidence(rd)
	if err != nil {
		t.Fatal(err)
	}
	c, err := attest.Verify(ev, rd)
	if err != nil {
		t.Fatal(err)
	}
	p := policyFor(d, "web")
	p.Simulated.AllowDebug = true
	if err := c.Satisfies(p); err != nil {
		t.Fatalf("Satisfies with allowDebug: %v", err)
	}
}

func TestSaveLoad(t *testing.T) {
	d, _ := devices(t)
	dir := t.TempDir()
	if err := d.Save(dir); err != nil {
		t.Fatal(err)
	}
	l, err := simulated.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	rd := attest.ReportData([]byte("n"), []byte("k"), nil)
	ev, err := l.Evidence(rd)
	if err != nil {
		t.Fatal(err)
	}
	c, err := attest.Verify(ev, rd)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Satisfies(policyFor(d, "web")); err != nil {
		t.Fatalf("loaded device's evidence: %v", err)
	}
}

func TestReportDataIsUnambiguous(t *testing.T) {
	a := attest.ReportData([]byte("ab"), []byte("c"), nil)
	b := attest.ReportData([]byte("a"), []byte("bc"), nil)
	if a == b {
		t.Fatal("moving a byte between nonce and key gives the same report data")
	}
}

func tamperMeasurement(t *testing.T, ev attest.Evidence) attest.Evidence {
	t.Helper()
	var att spb.Attestation
	if err := proto.Unmarshal(ev.Data, &att); err != nil {
		t.Fatal(err)
	}
	att.Report.Measurement[0] ^= 1
	b, err := proto.Marshal(&att)
	if err != nil {
		t.Fatal(err)
	}
	return attest.Evidence{Platform: ev.Platform, Data: b}
}

func matches(err error, want string) bool {
	if want == "" {
		return err == nil
	}
	return err != nil && strings.Contains(err.Error(), want)
}

// simulatedEvidence is a piece of simulated SNP evidence and the report data
// it binds.
func simulatedEvidence(b *testing.B) (attest.Evidence, [64]byte) {
	d, err := simulated.New(simulated.MeasurementOf("bench"))
	if err != nil {
		b.Fatal(err)
	}
	rd := attest.ReportData([]byte("n"), []byte("k"), nil)
	ev, err := d.Evidence(rd)
	if err != nil {
		b.Fatal(err)
	}
	return ev, rd
}

// BenchmarkVerifySimulated is one verification of simulated evidence: the same
// go-sev-guest chain and signature checks as real SNP.
func BenchmarkVerifySimulated(b *testing.B) {
	ev, rd := simulatedEvidence(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := attest.Verify(ev, rd); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyIdle is BenchmarkVerifySimulated's verification with the
// process left idle for a while after each (idle=2ms), as a coordinator is
// between enrolments at moderate load, beside the same back to back
// (idle=0): cpu-µs/op is the process's CPU time per verification, sleep and
// wake included, and verify-µs the time inside the verification. The
// difference is what going idle and waking costs on this machine, which an
// enrolment pays several times at half the peak rate (test/ha) and not at
// the peak, where no core idles.
func BenchmarkVerifyIdle(b *testing.B) {
	ev, rd := simulatedEvidence(b)
	for _, idle := range []time.Duration{0, 2 * time.Millisecond} {
		b.Run(fmt.Sprintf("idle=%v", idle), func(b *testing.B) {
			var inside time.Duration
			self := []int{os.Getpid()}
			cpu0 := tools.CPUSeconds(self)
			for i := 0; i < b.N; i++ {
				start := time.Now()
				if _, err := attest.Verify(ev, rd); err != nil {
					b.Fatal(err)
				}
				inside += time.Since(start)
				if idle > 0 {
					time.Sleep(idle)
				}
			}
			b.ReportMetric(1e6*(tools.CPUSeconds(self)-cpu0)/float64(b.N), "cpu-µs/op")
			b.ReportMetric(float64(inside.Microseconds())/float64(b.N), "verify-µs")
			b.ReportMetric(0, "ns/op")
		})
	}
}
