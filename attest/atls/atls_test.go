package atls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/ca/manifest"
)

var (
	once sync.Once
	dev  *simulated.Device
)

func coordinatorTEE(t *testing.T) *simulated.Device {
	once.Do(func() {
		var err error
		if dev, err = simulated.New(simulated.MeasurementOf("sealmesh-coordinator")); err != nil {
			t.Fatal(err)
		}
	})
	return dev
}

func policy(d *simulated.Device, image string) manifest.Attestation {
	m := simulated.MeasurementOf(image)
	return manifest.Attestation{Simulated: &manifest.SNPPolicy{Measurements: []string{hex.EncodeToString(m[:])}, RootFingerprint: d.RootFingerprint()}}
}

func serve(t *testing.T, cfg *tls.Config) string {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// get makes one request with a fresh attested-TLS client configuration.
func get(url string, accept func(*attest.Claims) error) error {
	tr := &http.Transport{DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		cfg, err := atls.Client(accept)
		if err != nil {
			return nil, err
		}
		return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
	}}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func TestAttestedTLS(t *testing.T) {
	d := coordinatorTEE(t)
	good, err := atls.Server(d)
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, good)
	accept := func(p manifest.Attestation) func(*attest.Claims) error {
		return func(c *attest.Claims) error { return c.Satisfies(p) }
	}

	tests := []struct {
		name   string
		url    string
		accept func(*attest.Claims) error
		want   string
	}{
		{"the coordinator the policy names", url, accept(policy(d, "sealmesh-coordinator")), ""},
		{"another measurement", url, accept(policy(d, "old-coordinator")), "not as the policy requires"},
		{"a server without evidence", serve(t, plainTLS(t)), accept(policy(d, "sealmesh-coordinator")), "carries no evidence"},
		{"evidence for another key", serve(t, evilServer(t, d, false)), accept(policy(d, "sealmesh-coordinator")), "does not match this enrolment"},
		{"evidence replayed for another nonce", serve(t, evilServer(t, d, true)), accept(policy(d, "sealmesh-coordinator")), "does not match this enrolment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := get(tt.url, tt.accept)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

func selfSigned(t *testing.T, key *ecdsa.PrivateKey, exts []pkix.Extension) tls.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), ExtraExtensions: exts}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func plainTLS(t *testing.T) *tls.Config {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &tls.Config{Certificates: []tls.Certificate{selfSigned(t, key, nil)}}
}

// evilServer holds genuine TEE evidence, but bound to a key it does not serve
// with (a relay), or to a nonce of its own choosing (a replay).
func evilServer(t *testing.T, d *simulated.Device, replay bool) *tls.Config {
	served, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	vouched, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		nonce, _ := hex.DecodeString(strings.Replace(strings.TrimSuffix(hello.ServerName, ".atls.sealmesh"), ".", "", 1))
		key := vouched
		if replay {
			key, nonce = served, make([]byte, 32)
		}
		spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
		ev, err := d.Evidence(attest.ReportData(nonce, spki, []byte("sealmesh atls v1")))
		if err != nil {
			return nil, err
		}
		ext, _ := json.Marshal(ev)
		c := selfSigned(t, served, []pkix.Extension{{Id: atls.OID, Value: ext}})
		return &c, nil
	}}
}
