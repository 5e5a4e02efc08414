package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAgentSideSecretScan runs a mesh (lighthouse, agent, two pods with
// their tunnels, a ping, a DEL) and then looks for its secrets where they
// must not be: every log (coordinator, lighthouse, agent, tunnels, the CNI
// plugin), every file the agent, the lighthouse and the coordinator wrote,
// and the agent's /metrics. The secrets: the lighthouse's join token, each
// pod's release token (kept only in its pod record, mode 0600), and any
// private key in PEM (a Nebula key goes to its tunnel through memory).
// What the operator was handed on purpose (owner key, unlock key, seed
// shares, the token file, the simulated TEEs' keys) is not scanned.
func TestAgentSideSecretScan(t *testing.T) {
	m := up(t)
	ctx := context.Background()
	a, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.AddPod(ctx, "pod-b")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := a.NS.Ping(b.OverlayIP, 3, 5*time.Second); err != nil || res.Received == 0 {
		t.Fatalf("ping pod-a → pod-b: %v %v", res, err)
	}
	work := m.Dir()

	token, err := os.ReadFile(filepath.Join(work, "lighthouse.token"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"join token": strings.TrimSpace(string(token))}
	records := filepath.Join(work, "agent-state", "pods")
	ents, err := os.ReadDir(records)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".json" {
			continue // the pod's tunnel log
		}
		raw, err := os.ReadFile(filepath.Join(records, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			ReleaseToken string `json:"releaseToken"`
		}
		if err := json.Unmarshal(raw, &rec); err != nil || rec.ReleaseToken == "" {
			t.Fatalf("pod record %s: %v, release token %q", e.Name(), err, rec.ReleaseToken)
		}
		if fi, _ := os.Stat(filepath.Join(records, e.Name())); fi.Mode().Perm() != 0o600 {
			t.Errorf("pod record %s has mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
		secrets["release token of "+e.Name()] = rec.ReleaseToken
	}
	if len(secrets) < 3 {
		t.Fatalf("found %d secrets to look for, want the token and two release tokens", len(secrets))
	}
	// Deleting a pod logs and releases; its record goes.
	if err := m.DelPod(ctx, b); err != nil {
		t.Fatal(err)
	}
	delete(m.Pods, "pod-b")

	handed := map[string]bool{"owner.key": true, "unlock-key": true, "lighthouse.token": true, "coordinator-tee": true, "sim-tee": true}
	scanned := 0
	look := func(where string, text []byte) {
		scanned++
		for name, s := range secrets {
			for _, form := range []string{s, base64.StdEncoding.EncodeToString([]byte(s))} {
				if strings.Contains(string(text), form) {
					t.Errorf("%s holds the %s", where, name)
				}
			}
		}
		if strings.Contains(string(text), "PRIVATE KEY-----") {
			t.Errorf("%s holds a private key in PEM", where)
		}
	}
	err = filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(work, p)
		if handed[rel] || strings.HasSuffix(rel, ".seed-share") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if filepath.Dir(rel) == filepath.Join("agent-state", "pods") && filepath.Ext(rel) == ".json" {
			// A pod record holds its own release token, and nothing else.
			var rec map[string]json.RawMessage
			if json.Unmarshal(raw, &rec) == nil {
				delete(rec, "releaseToken")
				raw, _ = json.Marshal(rec)
			}
		}
		look(rel, raw)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := m.AgentMetrics()
	if err != nil {
		t.Fatal(err)
	}
	look("the agent's /metrics", []byte(metrics))
	t.Logf("scanned %d files and /metrics for %d secrets", scanned, len(secrets))
	for _, must := range []string{"agent.log", "lighthouse.log", "coordinator.log", "sealmesh-cni.log"} {
		if fi, err := os.Stat(filepath.Join(work, must)); err != nil || fi.Size() == 0 {
			t.Errorf("%s is missing or empty: the scan would prove nothing (%v)", must, err)
		}
	}
}
