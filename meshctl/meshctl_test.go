package meshctl

import (
	"bytes"
	"encoding/hex"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/api/attested"
	"github.com/sealmesh/sealmesh/attest/simulated"
)

func TestPrintHistory(t *testing.T) {
	at := time.Date(2026, 11, 23, 1, 2, 3, 0, time.UTC)
	h := []api.HistoryEntry{
		{Generation: 1, Head: strings.Repeat("a", 64), Time: at, Signer: "alice", Hash: strings.Repeat("1", 64),
			Manifest: []byte(`{"version":1,"certificateLifetime":"1h","roles":[{"name":"web"}]}`)},
		{Generation: 2, Head: strings.Repeat("b", 64), Time: at.Add(time.Hour), Signer: "bob", Hash: strings.Repeat("2", 64),
			Manifest: []byte(`{"version":1,"certificateLifetime":"2h","roles":[{"name":"web"}]}`)},
		{Generation: 3, Head: strings.Repeat("c", 64), Time: at.Add(2 * time.Hour), Signer: "bob", Hash: strings.Repeat("2", 64),
			Manifest: []byte(`{"version":1,"certificateLifetime":"2h","roles":[{"name":"web"}]}`)},
	}
	var b bytes.Buffer
	PrintHistory(&b, h)
	want := `generation 1  head aaaaaaaaaaaa  2026-11-23T01:02:03Z  signed by alice  manifest 111111111111
  (first manifest)
generation 2  head bbbbbbbbbbbb  2026-11-23T02:02:03Z  signed by bob  manifest 222222222222
  ~ certificateLifetime: "1h" → "2h"
generation 3  head cccccccccccc  2026-11-23T03:02:03Z  signed by bob  manifest 222222222222
  (no change)
`
	if b.String() != want {
		t.Fatalf("PrintHistory:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestCoordinatorFlags: a coordinator URL or policy that cannot make a
// client is an error the command returns (main prints it and exits 1), not
// an exit from inside the command tree; commands that talk to no
// coordinator do not need either.
func TestCoordinatorFlags(t *testing.T) {
	t.Setenv("SEALMESH_COORDINATOR", "")
	t.Setenv("SEALMESH_COORDINATOR_POLICY", "")
	for _, c := range []struct {
		name string
		args []string
		want string // in the error; "" for none
	}{
		{"https needs a policy", []string{"status"}, "needs --coordinator-policy-file"},
		{"not a URL it speaks", []string{"manifest", "get", "--coordinator", "ftp://c:7080"}, "want an https://"},
		{"a policy needs https", []string{"manifest", "history", "--coordinator", "http://127.0.0.1:1", "--coordinator-policy-file", "p.json"}, "needs an https URL"},
		{"an unreadable policy", []string{"status", "--coordinator-policy-file", filepath.Join(t.TempDir(), "none.json")}, "none.json"},
		{"keygen needs no coordinator", []string{"keygen", "--out", filepath.Join(t.TempDir(), "owner.pem")}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := Command()
			cmd.SetArgs(c.args)
			cmd.SetOut(io.Discard)
			err := cmd.Execute()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("meshctl %s: %v", strings.Join(c.args, " "), err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("meshctl %s: %v, want an error with %q", strings.Join(c.args, " "), err, c.want)
			}
		})
	}
}

// sim-tee init --policy-out writes the attestation block that accepts the
// device it made: a coordinator policy file clients load as it is.
func TestSimTEEPolicyOut(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	out, err := meshctl("sim-tee", "init", "--dir", filepath.Join(dir, "tee"), "--image", "sealmesh-coordinator", "--policy-out", policy)
	if err != nil {
		t.Fatal(err)
	}
	a, err := attested.LoadPolicy(policy)
	if err != nil {
		t.Fatalf("the written policy does not load: %v", err)
	}
	want := simulated.MeasurementOf("sealmesh-coordinator")
	if a.Simulated == nil || len(a.Simulated.Measurements) != 1 || a.Simulated.Measurements[0] != hex.EncodeToString(want[:]) ||
		!strings.Contains(out, "rootFingerprint: "+a.Simulated.RootFingerprint) {
		t.Fatalf("policy %+v for output %q", a.Simulated, out)
	}
}
