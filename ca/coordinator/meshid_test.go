package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/cluster"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/store"
)

// TestStoreOfAnotherMesh (issue 24's store takeover): the store is
// untrusted, and whoever writes it can put there a self-consistent mesh B
// of their own whose manifest names the genuine coordinator image, served
// by a coordinator of theirs. A genuine replica started for mesh A
// (--mesh-id) over that store stays out of ready, dials no peer and takes no
// seed share; a client pinned to A sends no evidence to B's coordinator.
// Unpinned, the replica recovers B and says it trusted it on first use.
func TestStoreOfAnotherMesh(t *testing.T) {
	ctx := context.Background()
	meshA := setupPeers(t)
	meshB := setupPeers(t) // the attacker's: their seed, their CA
	idA, idB := meshA.a.MeshID(), meshB.a.MeshID()
	if idA == "" || idB == "" || idA == idB {
		t.Fatalf("mesh IDs %q and %q", idA, idB)
	}
	if st := meshA.a.Status(); st.MeshID != idA || st.MeshFirstUse {
		t.Fatalf("the creating coordinator's status: mesh %q, first use %v", st.MeshID, st.MeshFirstUse)
	}

	replica := func(pin string) (*coordinator.Coordinator, *atomic.Int32, *bytes.Buffer) {
		t.Helper()
		st, err := store.OpenFile(meshB.store)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := meshB.coordDev.SealingKey()
		var dials atomic.Int32
		logs := &bytes.Buffer{}
		c, err := coordinator.Open(ctx, coordinator.Config{Log: slog.New(slog.NewJSONHandler(logs, nil)), Store: st, StateDir: t.TempDir(),
			SealingKey: key, Issuer: meshB.coordDev, MeshID: pin, Peers: []string{meshB.aURL},
			Dial: func(url string, p attest.Policy, self attest.Issuer) *api.Client {
				dials.Add(1)
				return cluster.AttestedDial(url, p, self)
			}})
		if err != nil {
			t.Fatal(err)
		}
		return c, &dials, logs
	}

	pinned, dials, _ := replica(idA)
	pinned.TryPeers(ctx)
	if st := pinned.Status(); st.State != api.StateRecovering || !strings.Contains(st.Message, "holds mesh "+idB) || dials.Load() != 0 {
		t.Fatalf("replica pinned to A over B's store: %s (%s), %d dials", st.State, st.Message, dials.Load())
	}
	if _, err := pinned.RecoveryKey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pinned.Recover(ctx, &api.RecoverRequest{Seed: meshB.share}); !errors.Is(err, api.ErrRefused) || dials.Load() != 0 {
		t.Fatalf("seed share of B at a replica pinned to A: %v (%d dials)", err, dials.Load())
	}

	// A client pinned to A: B's nonce answer is refused, no evidence sent.
	var enrolments atomic.Int32
	url := servePlain(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.PathEnrol {
			enrolments.Add(1)
		}
		meshB.a.Handler().ServeHTTP(w, r)
	}))
	_, err := enrol.Workload(ctx, api.NewClient(url).ExpectingMesh(idA), webDev, api.Workload{Namespace: "prod", Name: "web-0"})
	if !errors.Is(err, api.ErrWrongMesh) || enrolments.Load() != 0 {
		t.Fatalf("client pinned to A enrolling at B: %v (%d enrolment requests)", err, enrolments.Load())
	}
	if _, err := enrol.Workload(ctx, api.NewClient(url).ExpectingMesh(idB), webDev, api.Workload{Namespace: "prod", Name: "web-0"}); err != nil {
		t.Fatalf("client pinned to B enrolling at B: %v", err)
	}

	// Unpinned: B is taken, and the replica says so.
	tofu, _, logs := replica("")
	tofu.TryPeers(ctx)
	st := tofu.Status()
	if st.State != api.StateReady || st.MeshID != idB || !st.MeshFirstUse || !strings.Contains(logs.String(), "trusting on first use") {
		t.Fatalf("unpinned replica: %s, mesh %s, first use %v", st.State, st.MeshID, st.MeshFirstUse)
	}
}
