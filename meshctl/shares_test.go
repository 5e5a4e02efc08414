package meshctl

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
)

// TestRerunAfterLostAnswer is finding 8 from the owner's side: the answer to
// the first `manifest set` is lost (here: its --out-dir is thrown away).
// Running the same command again changes nothing and writes the seed shares
// again; `seed-shares` fetches them from a coordinator that restarted
// locked; `recover --force` with one brings the mesh back.
func TestRerunAfterLostAnswer(t *testing.T) {
	dir := t.TempDir()
	storeDir, stateDir := t.TempDir(), t.TempDir()
	start := func() string {
		st, err := store.OpenFile(storeDir)
		if err != nil {
			t.Fatal(err)
		}
		c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: stateDir})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(c.Handler())
		t.Cleanup(srv.Close)
		return srv.URL
	}
	_, keyPEM, ownerPub, _ := owner.NewOwnerKey()
	_, sharePEM, sharePub, _ := owner.NewShareKey()
	keyFile, shareKeyFile := filepath.Join(dir, "owner.key"), filepath.Join(dir, "bob.key")
	os.WriteFile(keyFile, keyPEM, 0o600)
	os.WriteFile(shareKeyFile, sharePEM, 0o600)
	mf := filepath.Join(dir, "m.json")
	os.WriteFile(mf, []byte(fmt.Sprintf(`{"version": 1, "owners": [{"name": "alice", "key": %q}],
  "seedShareOwners": [{"name": "bob", "key": %q}], "networks": ["10.42.0.0/24"],
  "roles": [{"name": "web", "groups": ["web"], "attestation": {"snp": {"measurements": [%q]}}}], "lighthouses": [{"name": "lh1", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh1", "sha256": %q}]}`,
		ownerPub, sharePub, strings.Repeat("ab", 48), strings.Repeat("cd", 32))), 0o600)
	meshctl := func(args ...string) (string, error) {
		var out bytes.Buffer
		cmd := Command()
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		return out.String(), err
	}
	mkdir := func(name string) string {
		p := filepath.Join(dir, name)
		os.Mkdir(p, 0o700)
		return p
	}

	url := start()
	if _, err := meshctl("manifest", "set", mf, "--owner-key", keyFile, "--coordinator", url, "--out-dir", mkdir("lost")); err != nil {
		t.Fatal(err)
	}
	again := mkdir("again")
	out, err := meshctl("manifest", "set", mf, "--owner-key", keyFile, "--coordinator", url, "--out-dir", again)
	if err != nil {
		t.Fatalf("manifest set run again: %v", err)
	}
	if !strings.Contains(out, "applied already") || !strings.Contains(out, "generation 1") {
		t.Fatalf("manifest set run again said:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(again, "bob.seed-share")); err != nil {
		t.Fatalf("the rerun did not write the share: %v", err)
	}

	// The coordinator restarts, locked; the unlock key was in "lost".
	url = start()
	fetched := mkdir("fetched")
	if out, err := meshctl("seed-shares", "--owner-key", keyFile, "--coordinator", url, "--out-dir", fetched); err != nil {
		t.Fatalf("seed-shares: %v\n%s", err, out)
	}
	out, err = meshctl("recover", "--force", "--seed-share-file", filepath.Join(fetched, "bob.seed-share"), "--seed-share-key", shareKeyFile, "--coordinator", url, "--out-dir", fetched)
	if err != nil {
		t.Fatalf("recover with the fetched share: %v", err)
	}
	if !strings.Contains(out, "coordinator ready at generation 1") {
		t.Fatalf("recover said:\n%s", out)
	}
}
