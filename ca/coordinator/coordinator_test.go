package coordinator_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/ipam"
	"github.com/sealmesh/sealmesh/ca/nonce"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/jointoken"
)

var (
	devOnce       sync.Once
	webDev, dbDev *simulated.Device
	strangerDev   *simulated.Device
	devErr        error
	// lighthouseSecret's hash is in the test manifest; the token for a
	// harness's mesh is lighthouseToken(h).
	lighthouseSecret, _ = jointoken.New(strings.Repeat("0", 64))
	lighthouseTokenFP   = lighthouseSecret.Hash()
)

// lighthouseToken is the join token of the test manifest's lighthouse for
// h's mesh.
func lighthouseToken(t testing.TB, h *harness) string {
	t.Helper()
	tok, err := lighthouseSecret.For(h.c.MeshID())
	if err != nil {
		t.Fatal(err)
	}
	return tok.String()
}

// devices: two guests on one simulated chip (images "web" and "db"), and a guest
// whose chip chains to a root no manifest pins.
func devices(t testing.TB) {
	t.Helper()
	devOnce.Do(func() {
		webDev, devErr = simulated.New(simulated.MeasurementOf("web"))
		if devErr != nil {
			return
		}
		dbDev = &simulated.Device{}
		*dbDev = *webDev
		dbDev.Measurement = simulated.MeasurementOf("db")
		strangerDev, devErr = simulated.New(simulated.MeasurementOf("web"))
	})
	if devErr != nil {
		t.Fatal(devErr)
	}
}

func measurement(image string) string {
	m := simulated.MeasurementOf(image)
	return hex.EncodeToString(m[:])
}

func testManifest(root string) string {
	return fmt.Sprintf(`{
  "version": 1,
  "owners": [{"name": "alice", "key": %q}],
  "seedShareOwners": [{"name": "bob", "key": %q}],
  "networks": ["10.42.0.0/24"],
  "certificateLifetime": "1h",
  "roles": [
    {"name": "web", "groups": ["web", "pods"], "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}},
    {"name": "db", "groups": ["db", "pods"], "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}},
    {"name": "hw", "groups": ["hw"], "attestation": {"snp": {"measurements": [%q]}}}
  ],
  "lighthouses": [{"name": "lh1", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh1", "sha256": %q}],
  "firewall": [
    {"from": ["web"], "to": "db", "proto": "tcp", "port": "5432"},
    {"from": ["any"], "to": "pods", "proto": "icmp", "port": "any"}
  ]
}`, ownerPub(), sharePub(), measurement("web"), root, measurement("db"), root, measurement("hw"), lighthouseTokenFP)
}

type harness struct {
	c      *coordinator.Coordinator
	srv    *httptest.Server
	client *api.Client
	clock  *clock
	logs   *bytes.Buffer
}

type clock struct {
	mu sync.Mutex
	t  time.Time
	// boom makes the clock panic: a bug anywhere below a request.
	boom bool
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.boom {
		panic("clock: boom")
	}
	return c.t
}
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// dirs are a coordinator's store and local state directories.
type dirs struct{ store, state string }

func newDirs(t *testing.T) dirs { return dirs{store: t.TempDir(), state: t.TempDir()} }

func newHarness(t *testing.T, d dirs, sealingKey []byte) *harness {
	t.Helper()
	return newHarnessWith(t, d, sealingKey, nil)
}

// newHarnessWith is newHarness with the configuration changed by set.
func newHarnessWith(t *testing.T, d dirs, sealingKey []byte, set func(*coordinator.Config)) *harness {
	t.Helper()
	devices(t)
	st, err := store.OpenFile(d.store)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	logs := &bytes.Buffer{}
	cfg := coordinator.Config{
		Log: slog.New(slog.NewJSONHandler(logs, nil)), Store: st, StateDir: d.state, SealingKey: sealingKey, Now: clk.now,
	}
	if set != nil {
		set(&cfg)
	}
	c, err := coordinator.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return &harness{c: c, srv: srv, client: api.NewClient(srv.URL), clock: clk, logs: logs}
}

// create sets the first manifest, signed by the owner alice.
func (h *harness) create(t *testing.T, raw string) *api.ManifestResponse {
	t.Helper()
	req, err := owner.Request([]byte(raw), "", ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.client.SetManifest(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readyHarness(t *testing.T) *harness {
	h := newHarness(t, newDirs(t), nil)
	h.create(t, testManifest(webDev.RootFingerprint()))
	return h
}

func parseCert(t *testing.T, e *enrol.Enrolment) cert.Certificate {
	t.Helper()
	c, _, err := cert.UnmarshalCertificateFromPEM([]byte(e.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := cert.NewCAPoolFromPEM([]byte(e.CA))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.VerifyCertificate(time.Now(), c); err != nil {
		t.Fatalf("certificate does not verify against the CA it came with: %v", err)
	}
	return c
}

func TestEnrolAssignsIdentityFromTheManifest(t *testing.T) {
	h := readyHarness(t)
	ctx := context.Background()
	tests := []struct {
		name       string
		dev        *simulated.Device
		workload   api.Workload
		wantName   string
		wantRole   string
		wantGroups []string
		wantIP     string
		wantRules  int
	}{
		// The workload claims to be the lighthouse; the evidence says web.
		// A pod's name has its namespace: it never equals a lighthouse's
		// or a VM's, which are DNS labels.
		{"web claiming another name", webDev, api.Workload{Namespace: "kube-system", Name: "lh1"}, "lh1.kube-system", "web", []string{"web", "pods"}, "10.42.0.2/24", 1},
		{"db", dbDev, api.Workload{Namespace: "prod", Name: "db-0"}, "db-0.prod", "db", []string{"db", "pods"}, "10.42.0.3/24", 2},
		{"no pod named", dbDev, api.Workload{}, "db-10-42-0-4", "db", []string{"db", "pods"}, "10.42.0.4/24", 2},
		{"not a DNS name", dbDev, api.Workload{Namespace: "prod", Name: "DB_0"}, "db-10-42-0-5", "db", []string{"db", "pods"}, "10.42.0.5/24", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := enrol.Workload(ctx, h.client, tt.dev, tt.workload)
			if err != nil {
				t.Fatal(err)
			}
			c := parseCert(t, e)
			if c.Name() != tt.wantName || e.Role != tt.wantRole {
				t.Errorf("name, role = %q, %q; want %q, %q", c.Name(), e.Role, tt.wantName, tt.wantRole)
			}
			if got := fmt.Sprint(c.Groups()); got != fmt.Sprint(tt.wantGroups) {
				t.Errorf("groups = %s, want %s", got, fmt.Sprint(tt.wantGroups))
			}
			if got := c.Networks()[0].String(); got != tt.wantIP {
				t.Errorf("ip = %s, want %s", got, tt.wantIP)
			}
			// The coordinator signed our key; it never made one.
			_, pub, _ := keyOf(t, e)
			if !bytes.Equal(c.PublicKey(), pub) {
				t.Error("certificate does not carry the requester's public key")
			}
			if time.Until(c.NotAfter()) > time.Hour+time.Minute {
				t.Errorf("NotAfter %s exceeds the manifest's 1h lifetime", c.NotAfter())
			}
			if len(e.Inbound) != tt.wantRules {
				t.Errorf("inbound rules = %+v, want %d", e.Inbound, tt.wantRules)
			}
			if len(e.Lighthouses) != 1 || e.Lighthouses[0].OverlayIP != "10.42.0.1" {
				t.Errorf("lighthouses = %+v", e.Lighthouses)
			}
		})
	}
	st := h.c.Status()
	if len(st.Hosts) != len(tests) || st.Hosts[0].Workload != "kube-system/lh1" || st.Hosts[0].Role != "web" {
		t.Errorf("status hosts = %+v", st.Hosts)
	}
	if !st.AcceptsSimulated {
		t.Error("status does not say the mesh accepts simulated attestation")
	}
}

func keyOf(t *testing.T, e *enrol.Enrolment) ([]byte, []byte, error) {
	t.Helper()
	pub, err := curve25519X(e.PrivateKey)
	return e.PrivateKey, pub, err
}

// request builds a valid enrolment request by hand, so tests can break it.
func request(t *testing.T, h *harness, dev *simulated.Device, priv []byte) *api.EnrolRequest {
	t.Helper()
	n, err := h.client.Nonce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req := proven(t, n, priv)
	req.Workload = api.Workload{Namespace: "ns", Name: "p"}
	ev, err := dev.Evidence(attest.ReportData(req.Nonce, req.PublicKey, req.Binding()))
	if err != nil {
		t.Fatal(err)
	}
	req.Evidence = &api.Evidence{Platform: ev.Platform, Data: ev.Data}
	return req
}

func TestEnrolRefusals(t *testing.T) {
	h := readyHarness(t)
	ctx := context.Background()
	priv, pub, err := enrol.KeyPair()
	if err != nil {
		t.Fatal(err)
	}
	otherPriv, otherPub, _ := enrol.KeyPair()

	tests := []struct {
		name  string
		build func() *api.EnrolRequest
		want  string
	}{
		{"reused nonce", func() *api.EnrolRequest {
			req := request(t, h, webDev, priv)
			if _, err := h.client.Enrol(ctx, req); err != nil {
				t.Fatalf("first use: %v", err)
			}
			return req
		}, "nonce already used"},
		{"unknown nonce", func() *api.EnrolRequest {
			req := request(t, h, webDev, priv)
			req.Nonce = bytes.Repeat([]byte{7}, nonce.Size)
			return req
		}, "nonce was not issued by this coordinator"},
		{"expired nonce", func() *api.EnrolRequest {
			req := request(t, h, webDev, priv)
			h.clock.add(coordinator.NonceLifetime + time.Second)
			return req
		}, "nonce expired"},
		{"evidence bound to another key", func() *api.EnrolRequest {
			req := request(t, h, webDev, priv)
			// A thief swaps in its own key, which it can prove it holds.
			req.PublicKey = otherPub
			req.Proof = proven(t, &api.NonceResponse{Nonce: req.Nonce, PossessionKey: possessionKey(t, h)}, otherPriv).Proof
			return req
		}, "does not match this enrolment"},
		{"key not held", func() *api.EnrolRequest {
			// Another host's public key, known to anyone it talks to.
			req := request(t, h, webDev, priv)
			req.PublicKey = otherPub
			return req
		}, "no proof of possession"},
		{"no proof", func() *api.EnrolRequest {
			req := request(t, h, webDev, priv)
			req.Proof = nil
			return req
		}, "no proof of possession"},
		{"workload swapped after evidence", func() *api.EnrolRequest {
			req := request(t, h, webDev, priv)
			req.Workload.Name = "other"
			return req
		}, "does not match this enrolment"},
		{"wrong measurement", func() *api.EnrolRequest {
			d := *webDev
			d.Measurement = simulated.MeasurementOf("evil")
			return request(t, h, &d, priv)
		}, "matches no role"},
		{"root the manifest does not pin", func() *api.EnrolRequest { return request(t, h, strangerDev, priv) }, "the role pins"},
		{"wrong join token", func() *api.EnrolRequest {
			n, _ := h.client.Nonce(ctx)
			req := proven(t, n, priv)
			tok, _ := jointoken.New(h.c.MeshID())
			req.JoinToken = tok.String()
			return req
		}, "the join token is not one of manifest"},
		{"join token of another mesh", func() *api.EnrolRequest {
			n, _ := h.client.Nonce(ctx)
			req := proven(t, n, priv)
			tok, _ := lighthouseSecret.For(strings.Repeat("e", 64))
			req.JoinToken = tok.String()
			return req
		}, "the join token is for mesh eeee"},
		{"malformed join token", func() *api.EnrolRequest {
			n, _ := h.client.Nonce(ctx)
			req := proven(t, n, priv)
			req.JoinToken = "lighthouse-token-for-tests"
			return req
		}, "join token malformed"},
		{"short key", func() *api.EnrolRequest {
			req := request(t, h, webDev, priv)
			req.PublicKey = pub[:16]
			return req
		}, "want a 32-byte X25519 key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.c.Status().Hosts)
			_, err := h.client.Enrol(ctx, tt.build())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Enrol error = %v, want %q", err, tt.want)
			}
			if tt.name != "reused nonce" && len(h.c.Status().Hosts) != before {
				t.Error("a refused enrolment left a lease behind")
			}
		})
	}
}

// The platform must be named by the role: a role that accepts only real SNP
// refuses simulated evidence even when the measurement matches.
func TestSimulatedOnlyWhereNamed(t *testing.T) {
	h := readyHarness(t)
	d := *webDev
	d.Measurement = simulated.MeasurementOf("hw") // the snp-only role's measurement
	priv, _, _ := enrol.KeyPair()
	_, err := h.client.Enrol(context.Background(), request(t, h, &d, priv))
	if err == nil || !strings.Contains(err.Error(), `role hw: platform "simulated" is not accepted`) {
		t.Fatalf("Enrol error = %v", err)
	}
}

// A request cannot even ask for a name, IP or groups: unknown fields are refused.
func TestInvariantC_RequestCannotAskForIdentity(t *testing.T) {
	h := readyHarness(t)
	priv, _, _ := enrol.KeyPair()
	req := request(t, h, webDev, priv)
	var raw map[string]any
	b, _ := json.Marshal(req)
	json.Unmarshal(b, &raw)
	raw["groups"] = []string{"admin"}
	raw["ip"] = "10.42.0.1"
	b, _ = json.Marshal(raw)
	resp, err := http.Post(h.srv.URL+"/v1/enrol", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "unknown field") {
		t.Fatalf("status %d body %s, want 400 unknown field", resp.StatusCode, body)
	}
}

func TestLighthouseGetsItsFixedIdentity(t *testing.T) {
	h := readyHarness(t)
	e, err := enrol.Join(context.Background(), h.client, lighthouseToken(t, h))
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, e)
	if c.Name() != "lh1" || c.Networks()[0].String() != "10.42.0.1/24" || fmt.Sprint(c.Groups()) != "[lighthouse]" {
		t.Fatalf("lighthouse cert = %s %s %v", c.Name(), c.Networks(), c.Groups())
	}
	// Workloads never get the lighthouse's address.
	w, err := enrol.Workload(context.Background(), h.client, webDev, api.Workload{})
	if err != nil {
		t.Fatal(err)
	}
	if w.IP == "10.42.0.1/24" {
		t.Fatal("a workload got the lighthouse's IP")
	}
}

func TestAllocationUniqueReleasedAndExhausted(t *testing.T) {
	h := readyHarness(t)
	ctx := context.Background()
	seen := map[string]bool{}
	var first *enrol.Enrolment
	// 10.42.0.0/24: .1 is the lighthouse, .0 and .255 are not hosts: 253 left.
	for i := 0; i < 253; i++ {
		e, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Name: fmt.Sprint(i)})
		if err != nil {
			t.Fatalf("enrolment %d: %v", i, err)
		}
		if seen[e.IP] {
			t.Fatalf("IP %s handed out twice", e.IP)
		}
		seen[e.IP] = true
		if first == nil {
			first = e
		}
	}
	if _, err := enrol.Workload(ctx, h.client, webDev, api.Workload{}); err == nil || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("enrolment past the end: %v", err)
	}
	fp := fingerprint(t, first)
	if err := h.client.Release(ctx, &api.ReleaseRequest{Fingerprint: fp, ReleaseToken: "wrong", IP: first.IP}); err == nil {
		t.Fatal("release with a wrong token succeeded")
	}
	if err := h.client.Release(ctx, &api.ReleaseRequest{Fingerprint: fp, ReleaseToken: first.ReleaseToken, IP: first.IP}); err != nil {
		t.Fatal(err)
	}
	// Idempotent, like CNI DEL.
	if err := h.client.Release(ctx, &api.ReleaseRequest{Fingerprint: fp, ReleaseToken: first.ReleaseToken, IP: first.IP}); err != nil {
		t.Fatal(err)
	}
	// The released certificate is valid until it expires, and so its
	// address stays taken (finding 5 of the attack review: it went to the
	// next enrolment, two live certificates for one address).
	if _, err := enrol.Workload(ctx, h.client, webDev, api.Workload{}); err == nil || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("enrolment after a release, before the certificate expired: %v", err)
	}
	h.clock.add(first.NotAfter.Sub(h.clock.now()) + ipam.ExpiryGrace + time.Second)
	e, err := enrol.Workload(ctx, h.client, webDev, api.Workload{})
	if err != nil {
		t.Fatal(err)
	}
	if !seen[e.IP] {
		t.Fatalf("after every certificate expired got %s, not one of the network's", e.IP)
	}
}

// Expired certificates give their IP back without a release: the search for
// a free address, going round the network (next fit), hands it out again.
func TestExpiredLeaseIsReused(t *testing.T) {
	h := readyHarness(t)
	ctx := context.Background()
	a, err := enrol.Workload(ctx, h.client, webDev, api.Workload{})
	if err != nil {
		t.Fatal(err)
	}
	h.clock.add(2 * time.Hour)
	// 253 host addresses, one of them a's.
	for i := range 253 {
		b, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Name: fmt.Sprint(i)})
		if err != nil {
			t.Fatalf("enrolment %d after %s expired: %v", i, a.IP, err)
		}
		if b.IP == a.IP {
			return
		}
	}
	t.Fatalf("%s expired and was never handed out again", a.IP)
}

func TestManifestLifecycle(t *testing.T) {
	d := newDirs(t)
	h := newHarness(t, d, nil)
	ctx := context.Background()
	if _, err := h.client.Nonce(ctx); err == nil || !strings.Contains(err.Error(), "waiting-for-manifest") {
		t.Fatalf("nonce before manifest: %v", err)
	}
	bad := &api.ManifestRequest{Manifest: []byte(`{"version": 1, "networks": ["10.0.0.0/8"], "rols": []}`)}
	if _, err := h.client.SetManifest(ctx, bad); err == nil || !strings.Contains(err.Error(), `unknown field "rols"`) {
		t.Fatalf("bad manifest: %v", err)
	}
	good := testManifest(webDev.RootFingerprint())
	stranger, _, _, _ := owner.NewOwnerKey()
	req, _ := owner.Request([]byte(good), "", stranger)
	if _, err := h.client.SetManifest(ctx, req); err == nil || !strings.Contains(err.Error(), "not an owner") {
		t.Fatalf("first manifest signed by a non-owner: %v", err)
	}
	if st := h.c.Status(); st.State != api.StateWaiting {
		t.Fatalf("refused manifests changed state to %s", st.State)
	}
	if ents, _ := os.ReadDir(d.state); len(ents) != 0 {
		t.Fatalf("a refused first manifest left sealed state behind: %v", ents)
	}
	resp := h.create(t, good)
	if resp.UnlockKey == "" || len(resp.SeedShares) != 1 || resp.SeedShares[0].Owner != "bob" {
		t.Fatalf("creation returned unlock key %q and shares %+v", resp.UnlockKey, resp.SeedShares)
	}
	if resp.Status.Generation != 1 || resp.Status.State != api.StateReady {
		t.Fatalf("status after creation: %+v", resp.Status)
	}
	// Creating again with another manifest is a conflict: the mesh exists.
	// (The same request again is answered as applied:
	// TestLostCreateAnswerDoesNotBrickTheMesh.)
	req, _ = owner.Request([]byte(strings.Replace(good, `"1h"`, `"2h"`, 1)), "", ownerKey)
	if _, err := h.client.SetManifest(ctx, req); err == nil || !strings.Contains(err.Error(), "the mesh exists") {
		t.Fatalf("second creation: %v", err)
	}
	if _, err := enrol.Workload(ctx, h.client, webDev, api.Workload{}); err != nil {
		t.Fatal(err)
	}
}

func fingerprint(t *testing.T, e *enrol.Enrolment) string {
	t.Helper()
	fp, err := parseCert(t, e).Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func TestDualStackCertificate(t *testing.T) {
	h := newHarness(t, newDirs(t), nil)
	h.create(t, strings.Replace(testManifest(webDev.RootFingerprint()), `"networks": ["10.42.0.0/24"]`, `"networks": ["10.42.0.0/24", "fd42:42::/64"]`, 1))
	e, err := enrol.Workload(context.Background(), h.client, webDev, api.Workload{})
	if err != nil {
		t.Fatal(err)
	}
	c := parseCert(t, e)
	if got := fmt.Sprint(c.Networks()); got != "[10.42.0.2/24 fd42:42::2/64]" {
		t.Fatalf("certificate networks = %s", got)
	}
	if fmt.Sprint(e.IPs) != "[10.42.0.2/24 fd42:42::2/64]" || e.IP != "10.42.0.2/24" {
		t.Fatalf("response IP %s IPs %v", e.IP, e.IPs)
	}
}

// A coordinator started without cluster access cannot check tokens, and says so.
func TestTokensRefusedWithoutCluster(t *testing.T) {
	h := newHarness(t, newDirs(t), nil)
	h.create(t, strings.Replace(testManifest(webDev.RootFingerprint()),
		`{"name": "hw", "groups": ["hw"], "attestation": {"snp": {"measurements": [`,
		`{"name": "batch", "groups": ["batch"], "attestation": {"oidc": {"issuer": "https://kubernetes.default.svc", "audience": "sealmesh"}}},
    {"name": "hw", "groups": ["hw"], "attestation": {"snp": {"measurements": [`, 1))
	f := filepath.Join(t.TempDir(), "token")
	os.WriteFile(f, []byte("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"), 0o600)
	_, err := enrol.Workload(context.Background(), h.client, attest.TokenFile(f), api.Workload{})
	if err == nil || !strings.Contains(err.Error(), "--kubernetes-tokens") {
		t.Fatalf("token enrolment without cluster access: %v", err)
	}
}

// A status lists a bounded number of hosts and says how many there are; a
// status for one host finds it however many there are.
func TestStatusIsBounded(t *testing.T) {
	defer coordinator.SetMaxStatusHosts(3)()
	h := readyHarness(t)
	ctx := context.Background()
	var last *enrol.Enrolment
	for i := range 5 {
		e, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Namespace: "ns", Name: fmt.Sprintf("pod-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		last = e
	}
	proof := api.ProveOwner(ownerKey, api.PurposeHosts, h.clock.now())
	st, err := h.client.Hosts(ctx, proof, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Hosts) != 3 || st.HostCount != 5 {
		t.Fatalf("status lists %d hosts of %d, want 3 of 5", len(st.Hosts), st.HostCount)
	}
	for _, q := range []string{"ns/pod-4", last.IP[:strings.Index(last.IP, "/")], last.Name} {
		one, err := h.client.Hosts(ctx, proof, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(one.Hosts) != 1 || one.Hosts[0].Workload != "ns/pod-4" {
			t.Fatalf("status of %q: %+v", q, one.Hosts)
		}
	}
}

// The coordinator's metrics count enrolments by result, time their stages and
// show its state.
func TestMetrics(t *testing.T) {
	h := readyHarness(t)
	ctx := context.Background()
	if _, err := enrol.Workload(ctx, h.client, webDev, api.Workload{}); err != nil {
		t.Fatal(err)
	}
	priv, _, _ := enrol.KeyPair()
	if _, err := h.client.Enrol(ctx, request(t, h, strangerDev, priv)); err == nil {
		t.Fatal("a stranger's evidence was accepted")
	}
	rec := httptest.NewRecorder()
	h.c.Metrics().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`sealmesh_coordinator_enrolments_total{result="issued"} 1`,
		`sealmesh_coordinator_enrolments_total{result="refused"} 1`,
		`sealmesh_coordinator_enrolment_seconds_count 1`,
		// The stranger's evidence was checked too; only the issued one
		// was recorded.
		`sealmesh_coordinator_enrolment_stage_seconds_count{stage="verify"} 2`,
		`sealmesh_coordinator_enrolment_stage_seconds_count{stage="record"} 1`,
		"sealmesh_coordinator_ready 1",
		"sealmesh_coordinator_manifest_generation 1",
		"sealmesh_coordinator_hosts 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// An enrolment that panics is an error, not an issued certificate.
	req := request(t, h, webDev, priv)
	h.clock.mu.Lock()
	h.clock.boom = true
	h.clock.mu.Unlock()
	_, err := h.client.Enrol(ctx, req)
	h.clock.mu.Lock()
	h.clock.boom = false
	h.clock.mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("a panicking enrolment: %v", err)
	}
	rec = httptest.NewRecorder()
	h.c.Metrics().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{`sealmesh_coordinator_enrolments_total{result="issued"} 1`, `sealmesh_coordinator_enrolments_total{result="error"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("after a panic, metrics lack %q", want)
		}
	}
}
