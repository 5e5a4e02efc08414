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
 "lighthouses": [{"name": "lh", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242", "tokenSHA256": %q}]}`,
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
	routes := []string{"/v1/enrol", "/v1/manifest", "/v1/release", "/v1/unlock", "/v1/unlock-key", "/v1/recover", "/v1/peer/keys", "/v1/nonce", "/v1/status"}
	f.Add(uint8(0), eb)
	f.Add(uint8(1), mb)
	f.Add(uint8(2), []byte(`{"fingerprint": "ab", "releaseToken": "cd", "ip": "10.42.0.9/24"}`))
	f.Add(uint8(3), []byte(`{"unlockKey": "SMUK1-x"}`))
	f.Add(uint8(5), []byte(`{"seed": "AAAA", "force": true}`))
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := routes[int(route)%len(routes)]
		method := http.MethodPost
		if path == "/v1/status" {
			method = http.MethodGet
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, path, bytes.NewReader(body)))
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %q: %d %s", path, body, w.Code, w.Body)
		}
		if strings.Contains(w.Body.String(), "internal error") {
			t.Fatalf("%s %q: %s", path, body, w.Body)
		}
	})
}
