package state

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/history"
	"github.com/sealmesh/sealmesh/ca/keys"
	"github.com/sealmesh/sealmesh/ca/owner"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/manifest"
)

// workloadManifest is a valid manifest with a simulated role and owner.
func workloadManifest(ownerPub ed25519.PublicKey, sharePub []byte, dev *simulated.Device) string {
	m := dev.Measurement
	return fmt.Sprintf(`{"version": 1, "networks": ["10.42.0.0/24"], "certificateLifetime": "1h",
 "owners": [{"name": "alice", "key": %q}],
 "seedShareOwners": [{"name": "bob", "key": %q}],
 "roles": [{"name": "web", "groups": ["web"], "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}],
 "lighthouses": [{"name": "lh", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh", "sha256": %q}]}`,
		base64.StdEncoding.EncodeToString(ownerPub), base64.StdEncoding.EncodeToString(sharePub),
		fmt.Sprintf("%x", m[:]), dev.RootFingerprint(), strings.Repeat("0", 64))
}

func device(f *testing.F, name string) *simulated.Device {
	d, err := simulated.New(simulated.MeasurementOf(name))
	if err != nil {
		f.Fatal(err)
	}
	return d
}

// FuzzHistoryLoad replaces one object of a real history in the store with
// the fuzzer's bytes: Load must never panic, and a content-addressed object
// that changed must never verify.
func FuzzHistoryLoad(f *testing.F) {
	ctx := context.Background()
	st, err := store.OpenFile(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	seed, err := keys.NewSeed()
	if err != nil {
		f.Fatal(err)
	}
	ownerKey, _, _, err := owner.NewOwnerKey()
	if err != nil {
		f.Fatal(err)
	}
	sk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	m, err := manifest.Parse([]byte(workloadManifest(ownerKey.Public().(ed25519.PublicKey), sk.PublicKey().Bytes(), device(f, "web"))))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := history.Create(ctx, st, seed, m, history.Sign("", m, ownerKey), []byte("CA PEM"), nil, time.Now()); err != nil {
		f.Fatal(err)
	}
	objects, err := st.List(ctx, "")
	if err != nil {
		f.Fatal(err)
	}
	var names []string
	for k, v := range objects {
		names = append(names, k)
		f.Add(uint8(len(names)-1), v)
	}
	latest, _, err := st.Latest(ctx)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(255), latest)
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		var key string
		var orig []byte
		if int(which) < len(names) {
			key, orig = names[which], objects[names[which]]
			if err := st.Put(ctx, key, b); err != nil {
				t.Fatal(err)
			}
			defer st.Put(ctx, key, orig)
		} else {
			_, v, err := st.Latest(ctx)
			if err != nil {
				t.Fatal(err)
			}
			nv, err := st.SwapLatest(ctx, v, b)
			if err != nil {
				t.Fatal(err)
			}
			defer st.SwapLatest(ctx, nv, latest)
		}
		_, err := history.Load(ctx, st, seed, history.Floor{})
		if key != "" && err == nil && !bytes.Equal(b, orig) {
			t.Fatalf("history verified with %s changed to %q", key, b)
		}
	})
}

// FuzzAPI sends fuzzed bodies to every route of a ready coordinator: a
// request may be refused, never crash it or fail inside it.
func FuzzAPI(f *testing.F) {
	ctx := context.Background()
	st, err := store.OpenFile(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	dev := device(f, "web")
	c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	ownerKey, _, _, err := owner.NewOwnerKey()
	if err != nil {
		f.Fatal(err)
	}
	sk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	raw := workloadManifest(ownerKey.Public().(ed25519.PublicKey), sk.PublicKey().Bytes(), dev)
	req, err := owner.Request([]byte(raw), "", ownerKey)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := c.SetManifest(ctx, req); err != nil {
		f.Fatal(err)
	}
	h := c.Handler()
	n, _ := c.Nonce(context.Background())
	enrol := &api.EnrolRequest{Nonce: n.Nonce, PublicKey: make([]byte, 32), Workload: api.Workload{Namespace: "ns", Name: "p"}}
	ev, _ := dev.Evidence(attest.ReportData(enrol.Nonce, enrol.PublicKey, enrol.Binding()))
	enrol.Evidence = &api.Evidence{Platform: ev.Platform, Data: ev.Data}
	eb, _ := json.Marshal(enrol)
	mb, _ := json.Marshal(req)
	// Every route the server serves (api.Routes), so a new one is fuzzed
	// without being listed here.
	routes := api.Routes
	seed := func(method, path string, body []byte) {
		for i, r := range routes {
			if r.Method == method && r.Path == path {
				f.Add(uint8(i), body)
				return
			}
		}
		f.Fatalf("no route %s %s", method, path)
	}
	seed(http.MethodPost, api.PathEnrol, eb)
	seed(http.MethodPost, api.PathManifest, mb)
	seed(http.MethodPost, api.PathRelease, []byte(`{"fingerprint": "ab", "releaseToken": "cd", "ip": "10.42.0.9/24"}`))
	seed(http.MethodPost, api.PathUnlock, []byte(`{"unlockKey": "SMUK1-x"}`))
	seed(http.MethodPost, api.PathRecover, []byte(`{"seed": "AAAA", "force": true}`))
	seed(http.MethodPost, api.PathFreshness, []byte(`{"purpose": "fresh:ab", "time": "2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := routes[int(route)%len(routes)]
		path := r.Path
		if path == api.PathAttest {
			path += "?nonce=" + fmt.Sprintf("%x", body) // the query is its input
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(r.Method, path, bytes.NewReader(body)))
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q: %d %s", path, body, w.Code, w.Body)
		}
		if strings.Contains(w.Body.String(), "internal error") {
			t.Fatalf("%s %q: %s", path, body, w.Body)
		}
	})
}

// FuzzVerifyChain feeds meshctl verify's decoder (history.VerifyChain) a
// coordinator's history answer, altered: whatever a coordinator sends, the
// client refuses it or verifies it, and never accepts a changed entry of a
// valid history.
func FuzzVerifyChain(f *testing.F) {
	ctx := context.Background()
	st, err := store.OpenFile(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	c, err := coordinator.Open(ctx, coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	ownerKey, _, _, err := owner.NewOwnerKey()
	if err != nil {
		f.Fatal(err)
	}
	sk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	raw := workloadManifest(ownerKey.Public().(ed25519.PublicKey), sk.PublicKey().Bytes(), device(f, "web"))
	for i, lifetime := range []string{"1h", "2h"} {
		req, err := owner.Request([]byte(strings.Replace(raw, `"1h"`, `"`+lifetime+`"`, 1)), c.Status().Head, ownerKey)
		if i == 0 {
			req, err = owner.Request([]byte(raw), "", ownerKey)
		}
		if err != nil {
			f.Fatal(err)
		}
		if _, err := c.SetManifest(ctx, req); err != nil {
			f.Fatal(err)
		}
	}
	h, err := c.History(ctx)
	if err != nil {
		f.Fatal(err)
	}
	valid, _ := json.Marshal(h)
	f.Add(valid)
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"transition": {"generation": 1}, "manifest": "e30="}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var entries []api.HistoryEntry
		if json.Unmarshal(b, &entries) != nil {
			return
		}
		in := make([]history.Entry, len(entries))
		for i, e := range entries {
			in[i] = history.Entry{Transition: e.Transition, Manifest: e.Manifest}
		}
		v, err := history.VerifyChain(in)
		if err != nil {
			return
		}
		// Verified: then it is the genuine history or a prefix of it,
		// or a different history entirely (another mesh), never a
		// genuine one with an entry changed.
		if len(v.Heads) <= len(h) && v.MeshID() == h[0].Head {
			for i := range v.Heads {
				if v.Heads[i] != h[i].Head || !bytes.Equal(in[i].Manifest, h[i].Manifest) {
					t.Fatalf("entry %d of the genuine history verified changed", i)
				}
			}
		}
	})
}
