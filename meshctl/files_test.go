package meshctl

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/owner"
)

// TestKeygenNeverReplaces: keygen refuses an existing file (before, it
// replaced an owner key silently and kept the old file's 0644 mode).
func TestKeygenNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "owner.key")
	os.WriteFile(old, []byte("the only copy\n"), 0o644)
	fresh := filepath.Join(dir, "new.key")
	for _, c := range []struct {
		out, want string
	}{{old, "exists already"}, {fresh, ""}} {
		cmd := Command()
		cmd.SetArgs([]string{"keygen", "--out", c.out})
		cmd.SetOut(io.Discard)
		err := cmd.Execute()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Fatalf("keygen --out %s: %v, want %q", c.out, err, c.want)
		}
	}
	if b, _ := os.ReadFile(old); string(b) != "the only copy\n" {
		t.Fatal("keygen replaced an existing key")
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new key: %v, mode %v", err, fi.Mode())
	}
	// --force replaces it, mode 0600 whatever the old file's.
	cmd := Command()
	cmd.SetArgs([]string{"keygen", "--out", old, "--force"})
	cmd.SetOut(io.Discard)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("keygen --force: %v", err)
	}
	if b, _ := os.ReadFile(old); !strings.Contains(string(b), "PRIVATE KEY") {
		t.Fatalf("keygen --force left %q", b)
	}
	if fi, err := os.Stat(old); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("replaced key: %v, mode %v", err, fi.Mode())
	}
}

// fakeCreate is a coordinator waiting for its first manifest that answers
// with the seed shares given, counting the manifests it was sent.
func fakeCreate(t *testing.T, shares []api.SeedShare) (string, *atomic.Int32) {
	var sent atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/status":
			json.NewEncoder(w).Encode(api.Status{State: api.StateWaiting})
		case "/v1/manifest":
			sent.Add(1)
			json.NewEncoder(w).Encode(api.ManifestResponse{Status: &api.Status{State: api.StateReady, Generation: 1}, SeedShares: shares})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &sent
}

// TestManifestSetWritesOnlyInOutDir: a seed share is written only for an
// owner the manifest names, inside --out-dir (before, a coordinator's "../x"
// escaped it); an --out-dir that cannot be written is refused before the
// mesh is created (before, the mesh was created and the shares lost).
func TestManifestSetWritesOnlyInOutDir(t *testing.T) {
	_, keyPEM, ownerPub, _ := owner.NewOwnerKey()
	_, _, sharePub, _ := owner.NewShareKey()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "owner.key")
	os.WriteFile(keyFile, keyPEM, 0o600)
	mf := filepath.Join(dir, "m.json")
	os.WriteFile(mf, []byte(fmt.Sprintf(`{"version": 1, "owners": [{"name": "alice", "key": %q}],
  "seedShareOwners": [{"name": "bob", "key": %q}], "networks": ["10.42.0.0/24"],
  "roles": [{"name": "web", "groups": ["web"], "attestation": {"snp": {"measurements": [%q]}}}], "lighthouses": [{"name": "lh1", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh1", "sha256": %q}]}`,
		ownerPub, sharePub, strings.Repeat("ab", 48), strings.Repeat("cd", 32))), 0o600)

	run := func(url, outDir string) error {
		cmd := Command()
		cmd.SetArgs([]string{"manifest", "set", mf, "--owner-key", keyFile, "--coordinator", url, "--out-dir", outDir})
		cmd.SetOut(io.Discard)
		return cmd.Execute()
	}

	url, sent := fakeCreate(t, []api.SeedShare{{Owner: "../escaped", Share: []byte("x")}, {Owner: "bob", Share: []byte("share")}})
	if err := run(url, filepath.Join(dir, "typo")); err == nil || !strings.Contains(err.Error(), "--out-dir") || sent.Load() != 0 {
		t.Fatalf("missing --out-dir: %v, %d manifests sent", err, sent.Load())
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o700)
	err := run(url, out)
	if err == nil || !strings.Contains(err.Error(), `"../escaped"`) {
		t.Fatalf("a share for an owner the manifest does not name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "escaped.seed-share")); err == nil {
		t.Fatal("a seed share was written outside --out-dir")
	}
	if b, _ := os.ReadFile(filepath.Join(out, "bob.seed-share")); string(b) != "share" {
		t.Fatalf("bob's share: %q", b)
	}
	// Creating again into the same directory would replace bob's share.
	if err := run(url, out); err == nil || !strings.Contains(err.Error(), "exists already") || sent.Load() != 1 {
		t.Fatalf("a second creation over the first's shares: %v, %d manifests sent", err, sent.Load())
	}
}
