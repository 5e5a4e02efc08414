package meshctl

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

// run is meshctl with its stdout and stderr apart.
func run(args ...string) (stdout, stderr string, err error) {
	cmd := Command()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// Issue 28: -o existed on status only, only json worked, and -o yaml or
// -o wide printed the table with exit 0.
func TestOutputFormats(t *testing.T) {
	o := newOwnerMesh(t)
	reads := [][]string{
		{"status"}, {"status", "--owner-key", o.keyFile}, {"manifest", "get"}, {"manifest", "history"},
		{"token", "list"}, {"verify", "--out-dir", ""}, {"version"},
	}
	for _, args := range reads {
		name := strings.Join(args, " ")
		t.Run(name, func(t *testing.T) {
			with := func(format string) []string {
				return append([]string{"--coordinator", o.url, "-o", format}, args...)
			}
			if _, _, err := run(with("wide")...); err == nil || !strings.Contains(err.Error(), "want table, json or yaml") {
				t.Errorf("-o wide: %v", err)
			}
			js, _, err := run(with("json")...)
			if err != nil || !json.Valid([]byte(js)) {
				t.Errorf("-o json: %v\n%s", err, js)
			}
			y, _, err := run(with("yaml")...)
			var v any
			if err != nil || strings.HasPrefix(y, "{") || strings.HasPrefix(y, "[") || yaml.Unmarshal([]byte(y), &v) != nil || v == nil {
				t.Errorf("-o yaml: %v\n%s", err, y)
			}
			// The same document either way.
			fromYAML, _ := yaml.YAMLToJSON([]byte(y))
			var a, b any
			json.Unmarshal([]byte(js), &a)
			json.Unmarshal(fromYAML, &b)
			if ja, jb := mustJSON(a), mustJSON(b); !bytes.Equal(ja, jb) {
				t.Errorf("-o json and -o yaml differ:\n%s\n%s", js, y)
			}
		})
	}
	// A manifest comes back as YAML by default, and set reads it back as
	// the same manifest.
	y := o.must("manifest", "get")
	m, err := manifest.Parse([]byte(y))
	if err != nil {
		t.Fatalf("manifest get output does not parse: %v\n%s", err, y)
	}
	if want := o.c.Status().ManifestHash; m.Hash() != want || !strings.HasPrefix(y, "version: 1\n") {
		t.Errorf("manifest get: hash %s, want %s:\n%s", m.Hash(), want, y)
	}
	if _, _, err := run("--coordinator", o.url, "manifest", "get", "-o", "table"); err == nil {
		t.Error("manifest get -o table accepted")
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// Issue 28: status exited 0 when the coordinator was not ready and when
// --host matched nothing, and could not wait.
func TestStatusExitCodes(t *testing.T) {
	ready := newOwnerMesh(t)
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	waiting, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.DiscardHandler), Store: st, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(waiting.Handler())
	t.Cleanup(srv.Close)
	dead := httptest.NewServer(nil)
	dead.Close()

	for _, tc := range []struct {
		name string
		args []string
		code int    // 0: success
		out  string // in stdout or the error
	}{
		{"ready", []string{"--coordinator", ready.url, "status"}, 0, "coordinator: ready"},
		{"not ready", []string{"--coordinator", srv.URL, "status"}, ExitNotReady, "waiting-for-manifest"},
		{"not ready, json", []string{"--coordinator", srv.URL, "status", "-o", "json"}, ExitNotReady, `"state": "waiting-for-manifest"`},
		{"host matches nothing", []string{"--coordinator", ready.url, "status", "--owner-key", ready.keyFile, "--host", "default/nobody"}, ExitNoMatch, "matches no live host"},
		{"wait times out", []string{"--coordinator", srv.URL, "status", "--wait", "--timeout", "1500ms"}, ExitNotReady, "not ready"},
		{"wait, unreachable", []string{"--coordinator", dead.URL, "status", "--wait", "--timeout", "1s"}, 1, "connection refused"},
		{"timeout without wait", []string{"--coordinator", ready.url, "status", "--timeout", "1s"}, 1, "--timeout needs --wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := run(tc.args...)
			if got := exit(err); got != tc.code {
				t.Fatalf("exit %d (%v), want %d\n%s", got, err, tc.code, out)
			}
			if err != nil {
				out += err.Error()
			}
			if !strings.Contains(out, tc.out) {
				t.Errorf("output %q does not say %q", out, tc.out)
			}
		})
	}

	// --wait returns once the coordinator becomes ready.
	go func() {
		time.Sleep(1500 * time.Millisecond)
		req, err := owner.Request(ready.manifests[0], "", ready.key)
		if err == nil {
			_, err = waiting.SetManifest(context.Background(), req)
		}
		if err != nil {
			t.Error(err)
		}
	}()
	out, progress, err := run("--coordinator", srv.URL, "status", "--wait", "--timeout", "1m")
	if err != nil || !strings.Contains(out, "coordinator: ready") || !strings.Contains(progress, "waiting for the coordinator to be ready: waiting-for-manifest") {
		t.Fatalf("status --wait: %v\n%s\n%s", err, out, progress)
	}
}

func exit(err error) int {
	if err == nil {
		return 0
	}
	return ExitCode(err)
}

// Issue 28: commands took stray words silently; every command declares its
// arguments. Old flag spellings still work, with a warning.
func TestArguments(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"keygen", "typo", "--out", filepath.Join(dir, "k")}, `unknown command "typo" for "meshctl keygen"`},
		{[]string{"status", "extra"}, `unknown command "extra" for "meshctl status"`},
		{[]string{"manifest", "get", "x"}, `unknown command "x" for "meshctl manifest get"`},
		{[]string{"manifest", "set"}, "accepts 1 arg(s), received 0"},
		{[]string{"revoke", "a", "b", "--owner-key", "k"}, "accepts 1 arg(s), received 2"},
		{[]string{"sim-tee", "init", "--dir", dir, "extra"}, `unknown command "extra"`},
		{[]string{"typo"}, `unknown command "typo" for "meshctl"`},
		{[]string{"manifest", "typo"}, `unknown command "typo" for "meshctl manifest"`},
		{[]string{"token", "lst"}, `unknown command "lst" for "meshctl token"`},
		{[]string{"version", "extra"}, `unknown command "extra"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := run(tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("%v, want %q", err, tc.err)
			}
		})
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, _, err := run(args...)
		if err != nil || !strings.HasPrefix(out, "meshctl version dev\n") || !strings.Contains(out, "go:") {
			t.Errorf("meshctl %s: %v\n%s", args[0], err, out)
		}
	}

	o := newOwnerMesh(t)
	out, warn, err := run("--coordinator", o.url, "token", "create", "--role", "vm", "--key", o.keyFile, "--out", filepath.Join(dir, "vm.token"))
	if err != nil || !strings.Contains(out+warn, "Flag --key has been deprecated, use --owner-key") {
		t.Errorf("token create --key (old spelling of a required flag): %v\n%s%s", err, out, warn)
	}
	if out, warn, err := run("--coordinator", o.url, "--coordinator-policy", "", "status"); err != nil || !strings.Contains(out+warn, "Flag --coordinator-policy has been deprecated, use --coordinator-policy-file") {
		t.Errorf("--coordinator-policy: %v %s", err, warn)
	}
}

// Issue 28: /v1/status carried no version. A coordinator reports its own and
// announces it in gossip; meshctl status shows both.
func TestStatusShowsVersions(t *testing.T) {
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var self *coordinator.Coordinator
	members := func() []api.Member {
		return []api.Member{self.Member(), {Name: "coordinator-1", API: "https://10.0.0.2:7080", State: "ready", Version: "v0.9.0"}}
	}
	self, err = coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.DiscardHandler), Store: st, StateDir: t.TempDir(),
		Version: "v1.0.0-test", Members: members})
	if err != nil {
		t.Fatal(err)
	}
	if v := self.Member().Version; v != "v1.0.0-test" {
		t.Errorf("gossip member version %q", v)
	}
	srv := httptest.NewServer(self.Handler())
	t.Cleanup(srv.Close)
	out, _, _ := run("--coordinator", srv.URL, "status")
	if !strings.Contains(out, "version:     v1.0.0-test") || !regexp.MustCompile(`coordinator-1\s+https://10.0.0.2:7080\s+ready\s+v0.9.0`).MatchString(out) {
		t.Errorf("status does not show the versions:\n%s", out)
	}
	js, _, _ := run("--coordinator", srv.URL, "status", "-o", "json")
	var s api.Status
	if err := json.Unmarshal([]byte(js), &s); err != nil || s.Version != "v1.0.0-test" || len(s.Members) != 2 || s.Members[1].Version != "v0.9.0" {
		t.Errorf("status -o json: %v\n%s", err, js)
	}
}
