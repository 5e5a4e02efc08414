package meshctl

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestChanges: a manifest's change is reported by field path; an entry put
// in the middle of a list of roles is one addition, not every later role
// changed; a list of plain values is one field.
func TestChanges(t *testing.T) {
	a := `{"version":1,"certificateLifetime":"1h","roles":[{"name":"web","groups":["web"]},{"name":"db","groups":["db"]}]}`
	b := `{"version":1,"roles":[{"name":"web","groups":["web","edge"]},{"name":"cache","groups":["cache"]},{"name":"db","groups":["db"]}],"revoked":[{"fingerprint":"00112233445566778899aabbccddeeff","name":"x"}]}`
	got, err := Changes([]byte(a), []byte(b))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`- certificateLifetime: "1h"`,
		`+ revoked[0011223344556677].fingerprint: "00112233445566778899aabbccddeeff"`,
		`+ revoked[0011223344556677].name: "x"`,
		`+ roles[cache].groups: ["cache"]`,
		`+ roles[cache].name: "cache"`,
		`~ roles[web].groups: ["web"] → ["web","edge"]`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestManifestDiffAndDryRun: meshctl manifest diff and manifest set
// --dry-run show the change from the coordinator's manifest and send
// nothing; the current manifest shows as no change.
func TestManifestDiffAndDryRun(t *testing.T) {
	m := newVerifyMesh(t)
	url := m.serve(t, nil)
	keyFile := filepath.Join(t.TempDir(), "owner.key")
	os.WriteFile(keyFile, m.keyPEM, 0o600)
	before := m.c.Status()
	for _, args := range [][]string{
		{"manifest", "diff", writeTemp(t, m.manifests[0])},
		{"manifest", "set", writeTemp(t, m.manifests[0]), "--owner-key", keyFile, "--dry-run"},
	} {
		out, err := meshctl(append([]string{"--coordinator", url}, args...)...)
		if err != nil || !strings.Contains(out, `~ certificateLifetime: "3h" → "1h"`) {
			t.Fatalf("meshctl %v: %v\n%s", args, err, out)
		}
	}
	if after := m.c.Status(); after.Head != before.Head {
		t.Fatalf("--dry-run moved the head to %s", after.Head)
	}
	if out, err := meshctl("--coordinator", url, "manifest", "diff", writeTemp(t, m.manifests[2])); err != nil || !strings.Contains(out, "no change") {
		t.Fatalf("diff against the current manifest: %v\n%s", err, out)
	}
}
