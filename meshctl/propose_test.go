package meshctl

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/manifest"
)

// TestTwoOfThreeOwners: with updateThreshold 2 of 3 owners, one signature
// changes nothing (manifest set, and lowering the threshold, are refused);
// a proposal applies once a second owner approves it; approvals bind the
// exact content (a changed manifest is another proposal; a proposal whose
// stored content was altered is no proposal); the history verifies.
func TestTwoOfThreeOwners(t *testing.T) {
	ctx := context.Background()
	o := newOwnerMesh(t)
	c := api.NewClient(o.url)
	keyFiles := map[string]string{"alice": o.keyFile}
	owners := []manifest.PublicKey{}
	cur, _, err := currentManifest(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	owners = append(owners, cur.Owners...)
	for _, name := range []string{"bob", "carol"} {
		_, pemKey, pub, err := owner.NewOwnerKey()
		if err != nil {
			t.Fatal(err)
		}
		keyFiles[name] = filepath.Join(o.dir, name+".key")
		os.WriteFile(keyFiles[name], pemKey, 0o600)
		owners = append(owners, manifest.PublicKey{Name: name, Key: pub})
	}
	if _, err := editManifest(ctx, c, o.key, func(m *manifest.Manifest, _ string) error {
		m.Owners, m.UpdateThreshold = owners, 2
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	write := func(name string, edit func(*manifest.Manifest)) string {
		m, _, err := currentManifest(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		edit(m)
		p := filepath.Join(o.dir, name)
		b, _ := json.Marshal(m)
		os.WriteFile(p, b, 0o644)
		return p
	}
	head := func() string { st, _ := c.Status(ctx); return st.Head }

	before := head()
	longer := write("longer.json", func(m *manifest.Manifest) { m.CertificateLifetime = "2h" })
	if _, err := o.run("manifest", "set", longer, "--owner-key", keyFiles["alice"]); err == nil || !strings.Contains(err.Error(), "1 of the 2 owner signatures") {
		t.Fatalf("one signature: %v", err)
	}
	lower := write("lower.json", func(m *manifest.Manifest) { m.UpdateThreshold = 1 })
	if _, err := o.run("manifest", "set", lower, "--owner-key", keyFiles["bob"]); err == nil || !strings.Contains(err.Error(), "owner signatures") {
		t.Fatalf("lowering the threshold with one signature: %v", err)
	}
	if head() != before {
		t.Fatal("a refused update moved the head")
	}

	out := o.must("manifest", "propose", longer, "--owner-key", keyFiles["alice"])
	id := history.UpdateDigestHex(before, mustParse(t, longer).Hash())
	if !strings.Contains(out, id) || !strings.Contains(out, "1 more") {
		t.Fatalf("propose: %s", out)
	}
	// Alice changes her mind: the changed manifest is another proposal,
	// which Bob's approval of the first does not reach.
	changed := write("changed.json", func(m *manifest.Manifest) { m.CertificateLifetime = "3h" })
	o.must("manifest", "propose", changed, "--owner-key", keyFiles["alice"])
	changedID := history.UpdateDigestHex(before, mustParse(t, changed).Hash())
	// Someone with the store puts the first proposal's content under the
	// changed one's name: that is no proposal any more.
	first, err := o.st.Get(ctx, "proposal-"+id)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.st.Put(ctx, "proposal-"+changedID, first); err != nil {
		t.Fatal(err)
	}
	if _, err := o.run("manifest", "approve", changedID, "--owner-key", keyFiles["bob"]); err == nil {
		t.Fatal("a proposal whose content was swapped in the store was approved")
	}
	out = o.must("manifest", "approve", id, "--owner-key", keyFiles["bob"])
	if !strings.Contains(out, "applied") || !strings.Contains(out, "certificateLifetime") {
		t.Fatalf("approve: %s", out)
	}
	now, _, _ := currentManifest(ctx, c)
	if now.CertificateLifetime != "2h" {
		t.Fatalf("applied lifetime %s, want the approved 2h", now.CertificateLifetime)
	}
	// The history carries both signatures, and verifies here.
	var res verifyResult
	if err := json.Unmarshal([]byte(o.must("verify", "--out-dir", o.dir, "-o", "json")), &res); err != nil || res.Head != head() {
		t.Fatalf("verify after a 2-of-3 update: %+v %v", res, err)
	}
	// A CA rotation's first step is a change like any: two owners.
	if _, err := o.run("rotate", "ca", "--owner-key", keyFiles["carol"]); err == nil || !strings.Contains(err.Error(), "owner signatures") {
		t.Fatalf("rotate ca with one of two signatures: %v", err)
	}
}

func mustParse(t *testing.T, path string) *manifest.Manifest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRotateCA: meshctl rotate ca and --finish move the manifest's CA
// through its two steps, refuse them out of order, and verify and
// manifest history show where the rotation stands.
func TestRotateCA(t *testing.T) {
	o := newOwnerMesh(t)
	if _, err := o.run("rotate", "ca", "--finish", "--owner-key", o.keyFile); err == nil || !strings.Contains(err.Error(), "no rotation to finish") {
		t.Fatalf("--finish with no rotation: %v", err)
	}
	t.Log(o.must("rotate", "ca", "--owner-key", o.keyFile))
	if out := o.must("verify", "--out-dir", o.dir); !strings.Contains(out, "CA generation 2 (rotating: generation 1 still trusted") {
		t.Fatalf("verify during the rotation:\n%s", out)
	}
	if _, err := o.run("rotate", "ca", "--owner-key", o.keyFile); err == nil || !strings.Contains(err.Error(), "in progress") {
		t.Fatalf("a second rotation during one: %v", err)
	}
	t.Log(o.must("rotate", "ca", "--finish", "--owner-key", o.keyFile))
	var res verifyResult
	if err := json.Unmarshal([]byte(o.must("verify", "--out-dir", o.dir, "-o", "json")), &res); err != nil || res.CAGeneration != 2 || res.TrustsPreviousCA {
		t.Fatalf("verify after --finish: %+v, %v", res, err)
	}
	if hist := o.must("manifest", "history"); !strings.Contains(hist, "ca.generation") || !strings.Contains(hist, "ca.trustPrevious") {
		t.Fatalf("manifest history does not show the CA changes:\n%s", hist)
	}
}
