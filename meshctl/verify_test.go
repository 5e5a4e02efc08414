package meshctl

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/jointoken"
	"github.com/sealmesh/sealmesh/manifest"
	"github.com/sealmesh/sealmesh/test/tools"
)

// verifyMesh is a coordinator (plain HTTP: what is verified is the history,
// not the transport) at generation 3, its owner key, and the manifests set.
type verifyMesh struct {
	c         *coordinator.Coordinator
	st        store.Store
	key       ed25519.PrivateKey
	keyPEM    []byte
	manifests [][]byte
}

func newVerifyMesh(t *testing.T) *verifyMesh {
	t.Helper()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.DiscardHandler), Store: st, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	key, keyPEM, pub, err := owner.NewOwnerKey()
	if err != nil {
		t.Fatal(err)
	}
	m := &verifyMesh{c: c, st: st, key: key, keyPEM: keyPEM}
	for _, lifetime := range []string{"1h", "2h", "3h"} {
		raw := []byte(fmt.Sprintf(`{"version": 1, "owners": [{"name": "alice", "key": %q}], "networks": ["10.42.0.0/24"], "certificateLifetime": %q,
 "roles": [{"name": "web", "groups": ["web"], "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}, {"name": "vm", "groups": ["vms"], "joinToken": true}],
 "lighthouses": [{"name": "lh", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh", "sha256": %q}]}`,
			pub, lifetime, strings.Repeat("0", 96), strings.Repeat("1", 64), lighthouseSecret.Hash()))
		req, err := owner.Request(raw, c.Status().Head, key)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status().State == api.StateWaiting {
			req, _ = owner.Request(raw, "", key)
		}
		if _, err := c.SetManifest(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		m.manifests = append(m.manifests, raw)
	}
	return m
}

// serve serves the coordinator, passing GET /v1/history's answer through
// edit (nil: as it is).
func (m *verifyMesh) serve(t *testing.T, edit func([]api.HistoryEntry) []api.HistoryEntry) string {
	h := m.c.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathHistory || edit == nil {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var entries []api.HistoryEntry
		if err := json.Unmarshal(rec.Body.Bytes(), &entries); err != nil {
			t.Error(err)
		}
		json.NewEncoder(w).Encode(edit(entries))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// meshctl is run's standard output.
func meshctl(args ...string) (string, error) {
	out, _, err := run(args...)
	return out, err
}

// TestVerify: meshctl verify re-checks the whole history here and writes the
// CA, the manifests and a pin; a history altered on its way (a signature
// byte, two entries swapped, a generation dropped, an entry signed by a key
// that was no owner at that point) exits 4, an expected manifest that is not
// the active one 5, another mesh than --mesh-id 6.
func TestVerify(t *testing.T) {
	m := newVerifyMesh(t)
	st := m.c.Status()
	out := t.TempDir()
	got, err := meshctl("--coordinator", m.serve(t, nil), "verify", "--out-dir", out, "--manifest-file", writeTemp(t, m.manifests[2]), "-o", "json")
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var res verifyResult
	if err := json.Unmarshal([]byte(got), &res); err != nil || res.MeshID != st.MeshID || res.Head != st.Head || res.Generation != 3 {
		t.Fatalf("verify printed %s (%v); status %s at %d, mesh %s", got, err, st.Head, st.Generation, st.MeshID)
	}
	var pin Pin
	if b, err := os.ReadFile(filepath.Join(out, "pin")); err != nil || json.Unmarshal(b, &pin) != nil || pin != res.Pin {
		t.Fatalf("pin file: %s, %v", b, err)
	}
	for _, f := range []string{"ca.crt", "manifest-1.json", "manifest-3.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("verify wrote no %s: %v", f, err)
		}
	}

	forged := forgedEntry(t, m)
	for _, tc := range []struct {
		name string
		args []string
		edit func([]api.HistoryEntry) []api.HistoryEntry
		code int
	}{
		{"a signature byte flipped", nil, func(e []api.HistoryEntry) []api.HistoryEntry {
			e[1].Transition = editTransition(t, e[1].Transition, func(tr *history.Transition) { tr.Signature[0] ^= 1 })
			return e
		}, ExitHistory},
		{"two entries swapped", nil, func(e []api.HistoryEntry) []api.HistoryEntry { e[0], e[1] = e[1], e[0]; return e }, ExitHistory},
		{"a generation dropped", nil, func(e []api.HistoryEntry) []api.HistoryEntry { return append(e[:1], e[2:]...) }, ExitHistory},
		{"signed by a key that was no owner then", nil, func(e []api.HistoryEntry) []api.HistoryEntry { return append(e[:1], forged) }, ExitHistory},
		{"transitions withheld", nil, func(e []api.HistoryEntry) []api.HistoryEntry { e[2].Transition = nil; return e }, ExitHistory},
		{"another expected manifest", []string{"--manifest", writeTemp(t, m.manifests[1])}, nil, ExitManifestMismatch},
		{"another mesh", []string{"--mesh-id", strings.Repeat("ab", 32)}, nil, ExitMeshMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := meshctl(append([]string{"--coordinator", m.serve(t, tc.edit), "verify", "--out-dir", ""}, tc.args...)...)
			if ExitCode(err) != tc.code {
				t.Fatalf("verify: %v (exit %d), want exit %d", err, ExitCode(err), tc.code)
			}
		})
	}
}

// lighthouseSecret's hash admits verifyMesh's lighthouse; the token is
// lighthouseSecret.For(the mesh's ID).
var lighthouseSecret, _ = jointoken.New(strings.Repeat("0", 64))

// TestNebulaCertAcceptsVerifiedCA: stock nebula-cert (v1.11.1, the version
// sealmesh links) verifies a certificate the mesh issued against the ca.crt
// meshctl verify wrote.
func TestNebulaCertAcceptsVerifiedCA(t *testing.T) {
	nebulaCert := tools.Bin(t, "nebula-cert")
	m := newVerifyMesh(t)
	url := m.serve(t, nil)
	out := t.TempDir()
	if _, err := meshctl("--coordinator", url, "verify", "--out-dir", out); err != nil {
		t.Fatal(err)
	}
	tok, err := lighthouseSecret.For(m.c.MeshID())
	if err != nil {
		t.Fatal(err)
	}
	e, err := enrol.Join(context.Background(), api.NewClient(url), tok.String())
	if err != nil {
		t.Fatal(err)
	}
	crt := filepath.Join(out, "host.crt")
	if err := os.WriteFile(crt, []byte(e.Certificate), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(nebulaCert, "verify", "-ca", filepath.Join(out, "ca.crt"), "-crt", crt).CombinedOutput(); err != nil {
		t.Fatalf("nebula-cert verify: %v\n%s", err, b)
	}
	// And refuses it against another mesh's CA.
	other := newVerifyMesh(t)
	otherOut := t.TempDir()
	if _, err := meshctl("--coordinator", other.serve(t, nil), "verify", "--out-dir", otherOut); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(nebulaCert, "verify", "-ca", filepath.Join(otherOut, "ca.crt"), "-crt", crt).CombinedOutput(); err == nil {
		t.Fatalf("nebula-cert verify accepted the certificate against another mesh's CA:\n%s", b)
	}
}

func writeTemp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "manifest.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func editTransition(t *testing.T, raw []byte, f func(*history.Transition)) []byte {
	t.Helper()
	var tr history.Transition
	if err := json.Unmarshal(raw, &tr); err != nil {
		t.Fatal(err)
	}
	f(&tr)
	b, _ := json.Marshal(tr)
	return b
}

// forgedEntry is a generation 2 whose manifest adds an owner, signed by that
// owner: the first manifest's owners never allowed it.
func forgedEntry(t *testing.T, m *verifyMesh) api.HistoryEntry {
	t.Helper()
	h, err := m.c.History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pub, key, _ := ed25519.GenerateKey(nil)
	var doc map[string]any
	json.Unmarshal(h[0].Manifest, &doc)
	doc["owners"] = append(doc["owners"].([]any), map[string]any{"name": "mallory", "key": base64.StdEncoding.EncodeToString(pub)})
	raw, _ := json.Marshal(doc)
	mf, err := manifest.ParseJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	var first history.Transition
	json.Unmarshal(h[0].Transition, &first)
	u := history.Sign(h[0].Head, mf, key)
	canon := mf.Canonical()
	sum := sha256.Sum256(canon)
	tr := history.Transition{Generation: 2, Prev: h[0].Head, Manifest: hex.EncodeToString(sum[:]), CA: first.CA, Time: time.Now().UTC(),
		Signer: "mallory", SignerKey: u.SignerKey, Signature: u.Signature}
	b, _ := json.Marshal(tr)
	return api.HistoryEntry{Generation: 2, Manifest: canon, Transition: b}
}

// TestPinnedCommands: with the pin verify wrote, meshctl talks only to the
// verified mesh at the verified head: after the owner's next change, a
// pinned manifest set is refused 412 and changes nothing.
func TestPinnedCommands(t *testing.T) {
	m := newVerifyMesh(t)
	url := m.serve(t, nil)
	out := t.TempDir()
	if _, err := meshctl("--coordinator", url, "verify", "--out-dir", out); err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(out, "pin")
	keyFile := filepath.Join(t.TempDir(), "owner.key")
	os.WriteFile(keyFile, m.keyPEM, 0o600)
	if _, err := meshctl("--coordinator", url, "--pin-file", pin, "status"); err != nil {
		t.Fatalf("pinned status at the verified head: %v", err)
	}
	// Someone moves the mesh on.
	req, _ := owner.Request(m.manifests[1], m.c.Status().Head, m.key)
	if _, err := m.c.SetManifest(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	moved := m.c.Status()
	_, err := meshctl("--coordinator", url, "--pin-file", pin, "manifest", "set", writeTemp(t, m.manifests[0]), "--owner-key", keyFile)
	if !errors.Is(err, api.ErrHeadMismatch) {
		t.Fatalf("pinned manifest set after the mesh moved: %v, want head-mismatch", err)
	}
	if st := m.c.Status(); st.Head != moved.Head {
		t.Fatalf("the refused set moved the head to %s", st.Head)
	}
}

// TestImmutableMesh: an owner sets a manifest without owners; verify
// reports the mesh immutable, and every later change, the former owner's
// included, is refused.
func TestImmutableMesh(t *testing.T) {
	o := newOwnerMesh(t)
	if _, err := editManifest(context.Background(), api.NewClient(o.url), o.key, func(m *manifest.Manifest, _ string) error {
		m.Owners = nil
		return nil
	}); err != nil {
		t.Fatalf("making the mesh final: %v", err)
	}
	var res verifyResult
	if err := json.Unmarshal([]byte(o.must("verify", "--out-dir", o.dir, "-o", "json")), &res); err != nil || !res.Immutable {
		t.Fatalf("verify: %+v, %v; want immutable", res, err)
	}
	if out := o.must("verify", "--out-dir", o.dir); !strings.Contains(out, "immutable") || !strings.Contains(out, "CA generation 1") {
		t.Fatalf("verify's text does not say the mesh is immutable:\n%s", out)
	}
	if _, err := o.run("token", "create", "--role", "vm", "--owner-key", o.keyFile); err == nil || !strings.Contains(err.Error(), "immutable") {
		t.Fatalf("a change after the final manifest: %v, want refused as immutable", err)
	}
}
