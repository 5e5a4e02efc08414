package coordinator_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/store"
)

// staleOnce serves the latest pointer it was given once, when armed: the
// store moving between the unverified read of recovery and the verified one.
type staleOnce struct {
	store.Store
	old   []byte
	armed atomic.Bool
}

func (s *staleOnce) Latest(ctx context.Context) ([]byte, store.Version, error) {
	if s.armed.CompareAndSwap(true, false) {
		_, v, err := s.Store.Latest(ctx)
		return s.old, v, err
	}
	return s.Store.Latest(ctx)
}

// TestInvariantB_VerifiedHeadEqualsPeeked: peer recovery chooses whom to
// trust from the manifest it reads before it has the seed; the state it
// then verifies with the seed must be exactly that one, or nothing is
// adopted. Removing the check let a coordinator recover while the store
// showed one manifest to choose peers by and verified another.
func TestInvariantB_VerifiedHeadEqualsPeeked(t *testing.T) {
	ctx := context.Background()
	q := setupPeers(t)
	old, err := os.ReadFile(filepath.Join(q.store, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(testManifest(webDev.RootFingerprint()), `"1h"`, `"2h"`, 1)
	next = strings.Replace(next, `"networks":`, fmt.Sprintf(`"coordinators": [{"name": "coordinator-v1", "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}],
  "networks":`, measurement("sealmesh-coordinator"), webDev.RootFingerprint()), 1)
	req, _ := ownerRequest(next, q.a.Status().Head)
	if _, err := q.a.SetManifest(ctx, req); err != nil {
		t.Fatal(err)
	}

	st, err := store.OpenFile(q.store)
	if err != nil {
		t.Fatal(err)
	}
	stale := &staleOnce{Store: st, old: old}
	key, _ := q.coordDev.SealingKey()
	b, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil)), Store: stale, StateDir: t.TempDir(),
		SealingKey: key, Issuer: q.coordDev})
	if err != nil {
		t.Fatal(err)
	}
	stale.armed.Store(true)
	err = b.RecoverFromPeers(ctx, []string{q.aURL})
	if err == nil || !strings.Contains(err.Error(), "not the one read before") {
		t.Fatalf("recovery with the store moved between the peek and the verification: %v", err)
	}
	if st := b.Status(); st.State != api.StateRecovering {
		t.Fatalf("b is %s", st.State)
	}
	// Once the store holds still, the same recovery succeeds.
	if err := b.RecoverFromPeers(ctx, []string{q.aURL}); err != nil {
		t.Fatal(err)
	}
}

// TestRevokedKeyIsNotEnrolledAgain: a key whose certificate the
// manifest revokes is refused at enrolment, with fresh and valid evidence.
func TestRevokedKeyIsNotEnrolledAgain(t *testing.T) {
	ctx := context.Background()
	h := readyHarness(t)
	e, err := enrol.Workload(ctx, h.client, webDev, api.Workload{Namespace: "prod", Name: "web-0"})
	if err != nil {
		t.Fatal(err)
	}
	priv, pub, _ := keyOf(t, e)
	revokeHolder(t, h, pub, e)
	key, _ := enrol.InMemory(priv)
	if _, err := enrol.Renew(ctx, h.client, webDev, api.Workload{Namespace: "prod", Name: "web-0"}, key); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("the revoked key enrolled again: %v", err)
	}
}
