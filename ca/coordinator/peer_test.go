package coordinator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/ca/cluster"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/test/tools"
)

// peerSetup: coordinator A (image "sealmesh-coordinator", a coordinator role of
// the manifest) is ready and serves attested TLS; the store is shared.
type peerSetup struct {
	store    string
	coordDev *simulated.Device
	a        *coordinator.Coordinator
	aURL     string
	aLogs    *bytes.Buffer
	share    []byte // bob's seed share
}

func setupPeers(t *testing.T) *peerSetup {
	t.Helper()
	devices(t)
	coordDev := &simulated.Device{}
	*coordDev = *webDev
	coordDev.Measurement = simulated.MeasurementOf("sealmesh-coordinator")
	raw := strings.Replace(testManifest(webDev.RootFingerprint()), `"networks":`,
		fmt.Sprintf(`"coordinators": [{"name": "coordinator-v1", "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}],
  "networks":`, measurement("sealmesh-coordinator"), webDev.RootFingerprint()), 1)
	p := &peerSetup{store: t.TempDir(), coordDev: coordDev, aLogs: &bytes.Buffer{}}
	p.a, p.aURL = p.start(t, coordDev, t.TempDir(), p.aLogs)
	req, err := ownerRequest(raw, "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.a.SetManifest(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	p.share = resp.SeedShares[0].Share
	return p
}

// start runs a coordinator with dev as its TEE over the shared store, serving
// attested TLS.
func (p *peerSetup) start(t *testing.T, dev *simulated.Device, stateDir string, logs *bytes.Buffer) (*coordinator.Coordinator, string) {
	t.Helper()
	st, err := store.OpenFile(p.store)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := dev.SealingKey()
	if logs == nil {
		logs = &bytes.Buffer{}
	}
	c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewJSONHandler(logs, nil)), Store: st, StateDir: stateDir, SealingKey: key, Issuer: dev})
	if err != nil {
		t.Fatal(err)
	}
	return c, tools.ServeAttested(t, dev, c.Handler())
}

// servePlain serves h over plain HTTP (the coordinator under test is reached
// directly; its peers over attested TLS).
func servePlain(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestInvariantA_WorkerAskingForKeysGetsNothing: a ready coordinator sends
// the seed only to a peer whose attestation matches a coordinator role.
func TestInvariantA_WorkerAskingForKeysGetsNothing(t *testing.T) {
	p := setupPeers(t)
	w, _ := p.start(t, webDev, t.TempDir(), nil) // a worker image asking for keys
	err := w.RecoverFromPeers(context.Background(), []string{p.aURL})
	if err == nil || !strings.Contains(err.Error(), "not a coordinator of manifest") {
		t.Fatalf("worker asking for keys: %v", err)
	}
	if w.Status().State != api.StateRecovering {
		t.Fatalf("worker is %s", w.Status().State)
	}
	if !strings.Contains(p.aLogs.String(), "peer key request refused") {
		t.Fatal("a did not log the refusal")
	}
}

func TestPeerRecovery(t *testing.T) {
	ctx := context.Background()
	p := setupPeers(t)
	want := p.a.Status()

	t.Run("a coordinator recovers from a ready peer", func(t *testing.T) {
		b, _ := p.start(t, p.coordDev, t.TempDir(), nil)
		if b.Status().State != api.StateRecovering {
			t.Fatalf("b is %s", b.Status().State)
		}
		if err := b.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
			t.Fatal(err)
		}
		st := b.Status()
		if st.State != api.StateReady || st.CAFingerprint != want.CAFingerprint || st.Head != want.Head {
			t.Fatalf("b after recovery: %+v, want the CA and head of %+v", st, want)
		}
	})

	t.Run("invariant A: a key request without client attestation gets nothing", func(t *testing.T) {
		// The right TLS server check, but the requester attests only in the
		// body-less way a plain agent would: no client certificate.
		accept := attest.Accept{Platforms: []string{attest.PlatformSimulated}, Claims: func(*attest.Claims) error { return nil }}
		k, _ := seal.NewX25519()
		_, err := cluster.AttestedDial(p.aURL, accept, nil).PeerKeys(ctx, &api.PeerKeysRequest{PublicKey: k.PublicKey().Bytes()})
		if err == nil || !strings.Contains(err.Error(), "did not attest in the TLS handshake") {
			t.Fatalf("anonymous key request: %v", err)
		}
	})

	t.Run("invariant B: a peer that does not attest as a coordinator is not asked", func(t *testing.T) {
		var asked bool
		impostor := tools.ServeAttested(t, webDev, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { asked = true }))
		b, _ := p.start(t, p.coordDev, t.TempDir(), nil)
		err := b.RecoverFromPeers(ctx, []string{impostor})
		if err == nil || !strings.Contains(err.Error(), "not as the policy requires") {
			t.Fatalf("recovering from an impostor: %v", err)
		}
		if asked {
			t.Fatal("the recovering coordinator sent a request to a peer it had not attested")
		}
		if b.Status().State != api.StateRecovering {
			t.Fatalf("b is %s", b.Status().State)
		}
	})

	t.Run("invariant B: a seed that does not verify the store is refused", func(t *testing.T) {
		// A peer that attests correctly but sends another mesh's seed.
		other, _ := seal.NewX25519()
		wrong := other.PublicKey().Bytes() // any 32 bytes
		liar := tools.ServeAttested(t, p.coordDev, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var req api.PeerKeysRequest
			json.NewDecoder(r.Body).Decode(&req)
			enc, _ := seal.SealTo(req.PublicKey, seal.PeerSeedInfo, wrong)
			json.NewEncoder(w).Encode(api.PeerKeysResponse{Seed: enc})
		}))
		b, _ := p.start(t, p.coordDev, t.TempDir(), nil)
		err := b.RecoverFromPeers(ctx, []string{liar})
		if err == nil || !strings.Contains(err.Error(), "does not verify the store's history") {
			t.Fatalf("recovering with a wrong seed: %v", err)
		}
		if b.Status().State != api.StateRecovering {
			t.Fatalf("b is %s", b.Status().State)
		}
	})

	t.Run("anti-rollback: a store older than the peer's view is refused", func(t *testing.T) {
		q := setupPeers(t)
		old, _ := os.ReadFile(filepath.Join(q.store, "latest"))
		next := strings.Replace(testManifest(webDev.RootFingerprint()), `"1h"`, `"2h"`, 1)
		next = strings.Replace(next, `"networks":`, fmt.Sprintf(`"coordinators": [{"name": "coordinator-v1", "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}],
  "networks":`, measurement("sealmesh-coordinator"), webDev.RootFingerprint()), 1)
		req, _ := ownerRequest(next, q.a.Status().Head)
		if _, err := q.a.SetManifest(ctx, req); err != nil {
			t.Fatal(err)
		}
		// The store's operator puts generation 1 back; A has seen 2.
		os.WriteFile(filepath.Join(q.store, "latest"), old, 0o600)
		b, _ := q.start(t, q.coordDev, t.TempDir(), nil)
		err := b.RecoverFromPeers(ctx, []string{q.aURL})
		if err == nil || !strings.Contains(err.Error(), "older than the attested peer's view") {
			t.Fatalf("recovering over a rolled-back store: %v", err)
		}
		if b.Status().State != api.StateRecovering {
			t.Fatalf("b is %s", b.Status().State)
		}
	})

	t.Run("a seed share is refused while a ready peer exists, unless forced", func(t *testing.T) {
		st, _ := store.OpenFile(p.store)
		key, _ := p.coordDev.SealingKey()
		c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: t.TempDir(),
			SealingKey: key, Issuer: p.coordDev, Peers: []string{p.aURL}})
		if err != nil {
			t.Fatal(err)
		}
		h := &harness{c: c, client: api.NewClient(servePlain(t, c.Handler()))}
		share := p.share
		if _, err := recoverWith(t, h, share, false); err == nil || !strings.Contains(err.Error(), "is ready and will recover this coordinator") {
			t.Fatalf("share recovery with a ready peer: %v", err)
		}
		if _, err := recoverWith(t, h, share, true); err != nil {
			t.Fatalf("share recovery with --force: %v", err)
		}
	})

	t.Run("a locked coordinator is unlocked by an attested peer", func(t *testing.T) {
		// L seals with an unlock key (no derived key, like a TDX coordinator):
		// it joins from the seed share (forced past the ready peer), restarts,
		// and is locked; a peer provides the seed.
		state := t.TempDir()
		st, _ := store.OpenFile(p.store)
		open := func() (*coordinator.Coordinator, *harness) {
			c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: state,
				Issuer: p.coordDev, Peers: []string{p.aURL}})
			if err != nil {
				t.Fatal(err)
			}
			return c, &harness{c: c, client: api.NewClient(servePlain(t, c.Handler()))}
		}
		_, h := open()
		resp, err := recoverWith(t, h, p.share, true)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := open()
		if l.Status().State != api.StateLocked {
			t.Fatalf("restarted L is %s", l.Status().State)
		}
		if err := l.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
			t.Fatal(err)
		}
		if s := l.Status(); s.State != api.StateReady || s.CAFingerprint != want.CAFingerprint {
			t.Fatalf("L after the peer: %+v", s)
		}
		// The sealed state still opens with the operator's unlock key.
		_, h2 := open()
		if _, err := h2.client.Unlock(ctx, resp.UnlockKey); err != nil {
			t.Fatalf("the operator's unlock key after a peer unlock: %v", err)
		}
	})

	t.Run("a nonce is good only at the coordinator that issued it", func(t *testing.T) {
		b, _ := p.start(t, p.coordDev, t.TempDir(), nil)
		if err := b.RecoverFromPeers(ctx, []string{p.aURL}); err != nil {
			t.Fatal(err)
		}
		n, err := p.a.Nonce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		priv, _, _ := enrol.KeyPair()
		req := proven(t, n, priv)
		ev, _ := webDev.Evidence(attest.ReportData(req.Nonce, req.PublicKey, req.Binding()))
		req.Evidence = &api.Evidence{Platform: ev.Platform, Data: ev.Data}
		if _, err := b.Enrol(ctx, req); err == nil || !strings.Contains(err.Error(), "not issued by this coordinator") {
			t.Fatalf("A's nonce at B: %v", err)
		}
	})

	t.Run("peer recovery needs a TEE sealing key", func(t *testing.T) {
		st, _ := store.OpenFile(p.store)
		c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: t.TempDir(), Issuer: p.coordDev})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RecoverFromPeers(ctx, []string{p.aURL}); err == nil || !strings.Contains(err.Error(), "TEE sealing key") {
			t.Fatalf("unlock-key coordinator recovering from a peer: %v", err)
		}
	})
}

// hardware is the simulated device presenting itself as a hardware TEE: what
// matters here is only that the coordinator believes its own TEE is real.
type hardware struct{ *simulated.Device }

func (hardware) Platform() string { return attest.PlatformSNP }

// TestSimulatedCoordinatorRoles: a coordinator with a hardware TEE neither
// accepts a manifest whose coordinator roles accept the simulated TEE (anyone
// can run it) nor hands the seed to a peer that attested with it, unless its
// operator allowed it for development. Before, both were accepted silently.
func TestSimulatedCoordinatorRoles(t *testing.T) {
	ctx := context.Background()
	devices(t)
	coordDev := &simulated.Device{}
	*coordDev = *webDev
	coordDev.Measurement = simulated.MeasurementOf("sealmesh-coordinator")
	raw := strings.Replace(testManifest(webDev.RootFingerprint()), `"networks":`,
		fmt.Sprintf(`"coordinators": [{"name": "coordinator-v1", "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}],
  "networks":`, measurement("sealmesh-coordinator"), webDev.RootFingerprint()), 1)
	storeDir, stateDir := t.TempDir(), t.TempDir()
	start := func(allow bool) *coordinator.Coordinator {
		st, err := store.OpenFile(storeDir)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := coordDev.SealingKey()
		c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: stateDir,
			SealingKey: key, Issuer: hardware{coordDev}, AllowSimulatedCoordinators: allow})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	req, err := ownerRequest(raw, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := start(false).SetManifest(ctx, req); err == nil || !strings.Contains(err.Error(), "accepts the simulated TEE") {
		t.Fatalf("manifest with a simulated coordinator role on a hardware coordinator: %v", err)
	}
	allowed := start(true)
	if _, err := allowed.SetManifest(ctx, req); err != nil {
		t.Fatalf("with --allow-simulated-coordinators: %v", err)
	}
	if !allowed.Status().AcceptsSimulated {
		t.Fatal("status does not warn of the simulated coordinator role")
	}

	// The same coordinator restarted without the development flag keeps its
	// mesh but hands the seed to no simulated peer.
	strict := start(false)
	if st := strict.Status(); st.State != api.StateReady {
		t.Fatalf("restarted: %s: %s", st.State, st.Message)
	}
	url := tools.ServeAttested(t, hardware{coordDev}, strict.Handler())
	b, _ := (&peerSetup{store: storeDir}).start(t, coordDev, t.TempDir(), nil)
	if err := b.RecoverFromPeers(ctx, []string{url}); err == nil || !strings.Contains(err.Error(), "simulated TEE") {
		t.Fatalf("simulated peer asking a hardware coordinator for the seed: %v", err)
	}
	if b.Status().State != api.StateRecovering {
		t.Fatalf("b is %s", b.Status().State)
	}
}
