package atls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	tdxtestdata "github.com/google/go-tdx-guest/testing/testdata"

	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/atls"
	"github.com/sealmesh/sealmesh/attest/simulated"
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

func policy(d *simulated.Device, image string) attest.Attestation {
	m := simulated.MeasurementOf(image)
	return attest.Attestation{Simulated: &attest.SNPPolicy{Measurements: []string{hex.EncodeToString(m[:])}, RootFingerprint: d.RootFingerprint()}}
}

func serve(t *testing.T, cfg *tls.Config) string {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

func server(t *testing.T, d *simulated.Device) *atls.Server {
	s, err := atls.NewServer(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serveWho serves s, answering each request with the measurement its client
// attested to, or "anonymous".
func serveWho(t *testing.T, s *atls.Server) string {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := atls.PeerClaims(r.Context()); c != nil {
			w.Write([]byte(c.Measurement))
			return
		}
		w.Write([]byte("anonymous"))
	}))
	s.Configure(srv.Config)
	srv.TLS = s.TLS
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// get makes one request with a fresh attested-TLS client configuration.
func get(url string, accept attest.Policy) error {
	_, err := getAs(url, accept, nil)
	return err
}

// getAs is get with the client attesting as self, returning the body.
func getAs(url string, accept attest.Policy, self attest.Issuer) (string, error) {
	resp, err := (&http.Client{Transport: atls.Transport(accept, self), Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestAttestedTLS(t *testing.T) {
	d := coordinatorTEE(t)
	url := serve(t, server(t, d).TLS)
	accept := attest.Satisfying

	tests := []struct {
		name   string
		url    string
		accept attest.Policy
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

// TestClientAttestation: a client that attests reaches the handler with its
// claims; one that does not is anonymous; a client certificate that does not
// carry evidence for this handshake's server nonce fails the handshake.
func TestClientAttestation(t *testing.T) {
	d := coordinatorTEE(t)
	peerDev := &simulated.Device{}
	*peerDev = *d
	peerDev.Measurement = simulated.MeasurementOf("sealmesh-coordinator-v2")
	url := serveWho(t, server(t, d))
	acceptServer := attest.Satisfying(policy(d, "sealmesh-coordinator"))
	want := simulated.MeasurementOf("sealmesh-coordinator-v2")

	tests := []struct {
		name    string
		self    attest.Issuer
		client  func() (*tls.Config, error)
		want    string
		wantErr string
	}{
		{name: "attesting client", self: peerDev, want: hex.EncodeToString(want[:])},
		{name: "client without a TEE", want: "anonymous"},
		{name: "client certificate without evidence", client: func() (*tls.Config, error) {
			cfg, err := atls.Client(acceptServer, nil)
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			cert := selfSigned(t, key, nil)
			cfg.Certificates = []tls.Certificate{cert}
			return cfg, err
		}, wantErr: "carries no evidence"},
		{name: "client evidence for another server nonce", client: func() (*tls.Config, error) {
			cfg, err := atls.Client(acceptServer, nil)
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
			ev, _ := peerDev.Evidence(attest.ReportData(make([]byte, 32), spki, []byte("sealmesh atls client v1")))
			ext, _ := json.Marshal(ev)
			cfg.Certificates = []tls.Certificate{selfSigned(t, key, []pkix.Extension{{Id: atls.OID, Value: ext}})}
			return cfg, err
		}, wantErr: "does not match"},
		{name: "client evidence with the server's context", client: func() (*tls.Config, error) {
			// Evidence a server would make can never pass as a client's.
			var serverNonce []byte
			cfg, err := atls.Client(acceptServer, nil)
			verify := cfg.VerifyPeerCertificate
			cfg.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
				c, _ := x509.ParseCertificate(raw[0])
				for _, e := range c.Extensions {
					if e.Id.Equal(atls.NonceOID) {
						asn1.Unmarshal(e.Value, &serverNonce)
					}
				}
				return verify(raw, chains)
			}
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
				ev, _ := peerDev.Evidence(attest.ReportData(serverNonce, spki, []byte("sealmesh atls v1")))
				ext, _ := json.Marshal(ev)
				c := selfSigned(t, key, []pkix.Extension{{Id: atls.OID, Value: ext}})
				return &c, nil
			}
			return cfg, err
		}, wantErr: "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			var err error
			if tt.client == nil {
				got, err = getAs(url, acceptServer, tt.self)
			} else {
				got, err = getWith(url, tt.client)
			}
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("request succeeded (%q), want a failed handshake: %s", got, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("server saw %q, want %q", got, tt.want)
			}
		})
	}
}

// TestClientAttestationError: the server says why it refused a client.
func TestClientAttestationError(t *testing.T) {
	d := coordinatorTEE(t)
	s := server(t, d)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", s.TLS)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errs := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errs <- err
			return
		}
		defer c.Close()
		errs <- c.(*tls.Conn).Handshake()
	}()
	cfg, _ := atls.Client(attest.Accept{Platforms: []string{attest.PlatformSimulated}, Claims: func(*attest.Claims) error { return nil }}, nil)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cfg.Certificates = []tls.Certificate{selfSigned(t, key, nil)}
	if c, err := tls.Dial("tcp", ln.Addr().String(), cfg); err == nil {
		c.Read(make([]byte, 1)) // TLS 1.3: the client learns of the refusal on its first read
		c.Close()
	}
	if err := <-errs; err == nil || !strings.Contains(err.Error(), "atls: client: the certificate carries no evidence") {
		t.Fatalf("server handshake: %v", err)
	}
}

func getWith(url string, client func() (*tls.Config, error)) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true, DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		cfg, err := client()
		if err != nil {
			return nil, err
		}
		return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
	}}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestPool: a Pool reuses its attested connection, and after Reset no request
// goes on a connection made before it, not even one that was busy at the time;
// a rule tightened before Reset is checked on the next request.
func TestPool(t *testing.T) {
	d := coordinatorTEE(t)
	s := server(t, d)
	arrived, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		w.Write([]byte(r.RemoteAddr))
	}))
	s.Configure(srv.Config)
	srv.TLS = s.TLS
	srv.StartTLS()
	t.Cleanup(srv.Close)

	var mu sync.Mutex
	handshakes, refuse := 0, false
	want := policy(d, "sealmesh-coordinator")
	accept := func(c *attest.Claims) error {
		mu.Lock()
		defer mu.Unlock()
		handshakes++
		if refuse {
			return errors.New("no longer trusted")
		}
		return c.Satisfies(want)
	}
	pool := atls.NewPool(attest.Accept{Platforms: []string{attest.PlatformSimulated}, Claims: accept}, nil, nil)
	client := &http.Client{Transport: pool, Timeout: 10 * time.Second}
	from := func(path string) (string, error) {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return handshakes
	}

	a, err := from("/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := from("/")
	if err != nil {
		t.Fatal(err)
	}
	if a != b || count() != 1 {
		t.Fatalf("two requests: connections %s and %s, %d handshakes; want one reused connection", a, b, count())
	}

	// A request busy across Reset finishes on its connection, which is not
	// used afterwards.
	slow := make(chan string, 1)
	go func() {
		addr, err := from("/slow")
		if err != nil {
			addr = "error: " + err.Error()
		}
		slow <- addr
	}()
	<-arrived
	pool.Reset()
	close(release)
	if got := <-slow; got != a {
		t.Fatalf("the busy request went on %s, want %s", got, a)
	}
	c, err := from("/")
	if err != nil {
		t.Fatal(err)
	}
	if c == a || count() != 2 {
		t.Fatalf("after Reset: connection %s (before: %s), %d handshakes; want a fresh handshake", c, a, count())
	}

	// The rule changes: after Reset the next request is checked against it.
	mu.Lock()
	refuse = true
	mu.Unlock()
	if _, err := from("/"); err != nil {
		t.Fatalf("without Reset the established connection should still serve: %v", err)
	}
	pool.Reset()
	if _, err := from("/"); err == nil || !strings.Contains(err.Error(), "no longer trusted") {
		t.Fatalf("after Reset with the rule tightened: %v, want the handshake refused", err)
	}
}

// TestPoolBurst: a burst of requests from one Pool, as behind a stalled
// coordinator, waits for the Pool's few connections instead of opening one
// per request: each new connection costs a handshake with evidence on both
// sides, and under a backlog that work would keep the server from catching
// up (BenchmarkCluster saw p50 go from 4 ms to 1.4 s after a 300 ms stall,
// every enrolment making a handshake of its own).
func TestPoolBurst(t *testing.T) {
	const burst = 40
	d := coordinatorTEE(t)
	s := server(t, d)
	var mu sync.Mutex
	inflight, most := 0, 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inflight++
		most = max(most, inflight)
		mu.Unlock()
		// Busy long enough that the burst finds every connection taken.
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		inflight--
		mu.Unlock()
	}))
	s.Configure(srv.Config)
	srv.TLS = s.TLS
	srv.StartTLS()
	t.Cleanup(srv.Close)

	handshakes := 0
	want := policy(d, "sealmesh-coordinator")
	accept := func(c *attest.Claims) error {
		mu.Lock()
		handshakes++
		mu.Unlock()
		return c.Satisfies(want)
	}
	client := &http.Client{Transport: atls.NewPool(attest.Accept{Platforms: []string{attest.PlatformSimulated}, Claims: accept}, nil, nil), Timeout: 30 * time.Second}
	errs := make(chan error, burst)
	for range burst {
		go func() {
			resp, err := client.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	for range burst {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if handshakes > atls.PoolPerHost || most > atls.PoolPerHost {
		t.Fatalf("%d requests at once: %d handshakes, %d at the server at once; want at most %d of each", burst, handshakes, most, atls.PoolPerHost)
	}
}

// crasherServer serves go-tdx-guest's sample quote with its signed data's size
// set to 16, as an attacker announcing a URL over gossip did: go-tdx-guest
// v0.3.1 panics parsing it, in the client's dial goroutine.
func crasherServer(t *testing.T) *tls.Config {
	q := append([]byte(nil), tdxtestdata.RawQuote...)
	copy(q[0x278:], []byte{16, 0, 0, 0})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ext, _ := json.Marshal(attest.Evidence{Platform: attest.PlatformTDX, Data: q})
	c := selfSigned(t, key, []pkix.Extension{{Id: atls.OID, Value: ext}})
	return &tls.Config{Certificates: []tls.Certificate{c}}
}

// TestMalformedServerEvidence: a server whose evidence crashed the TEE
// library's parser is refused with an error. A client whose policy does not
// name the platform never parses it; one that does gets the layout check.
// Before, both clients' processes exited (a panic in net/http's dial
// goroutine, which nothing recovers).
func TestMalformedServerEvidence(t *testing.T) {
	d := coordinatorTEE(t)
	url := serve(t, crasherServer(t))
	tdx := attest.Attestation{TDX: &attest.TDXPolicy{MRTDs: []string{strings.Repeat("0", 96)}}}
	tests := []struct {
		name   string
		policy attest.Policy
		want   string
	}{
		{"policy names only simulated", attest.Satisfying(policy(d, "sealmesh-coordinator")), "refused unparsed"},
		{"policy names tdx", attest.Satisfying(tdx), "malformed quote"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := get(url, tt.policy)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
