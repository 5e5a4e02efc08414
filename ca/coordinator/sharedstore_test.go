package coordinator_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/coordinator"
	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/store/etcdstore"
	"github.com/sealmesh/sealmesh/ca/store/kubestore"
	"github.com/sealmesh/sealmesh/test/tools"
)

// The coordinator's whole state life on the shared backends: create, enrol,
// update, restart, unlock; and a coordinator elsewhere sees the same history.
func TestCoordinatorOnSharedStores(t *testing.T) {
	backends := []struct {
		name string
		open func(t *testing.T) func() store.Store
	}{
		{"etcd", func(t *testing.T) func() store.Store {
			endpoint := tools.StartEtcd(t)
			return func() store.Store {
				st, err := etcdstore.Open([]string{endpoint}, "/sealmesh")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				return st
			}
		}},
		{"kubernetes", func(t *testing.T) func() store.Store {
			cfg := tools.StartKubeAPIServer(t)
			tools.CreateNamespace(t, cfg, "sealmesh")
			return func() store.Store {
				st, err := kubestore.Open(cfg, "sealmesh", "mesh")
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { coordinatorLifecycle(t, b.open(t)) })
	}
}

func coordinatorLifecycle(t *testing.T, openStore func() store.Store) {
	devices(t)
	ctx := context.Background()
	open := func(stateDir string) (*coordinator.Coordinator, *api.Client) {
		st := openStore()
		c, err := coordinator.Open(context.Background(), coordinator.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Store: st, StateDir: stateDir})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(c.Handler())
		t.Cleanup(srv.Close)
		return c, api.NewClient(srv.URL)
	}
	state := t.TempDir()
	c, client := open(state)
	h := &harness{c: c, client: client, logs: &bytes.Buffer{}}
	created := h.create(t, testManifest(webDev.RootFingerprint()))
	if _, err := enrol.Workload(ctx, client, webDev, api.Workload{}); err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(testManifest(webDev.RootFingerprint()), `"1h"`, `"2h"`, 1)
	if _, err := h.update(t, next, ownerKey, created.Status.Head); err != nil {
		t.Fatal(err)
	}

	c2, client2 := open(state)
	if c2.Status().State != api.StateLocked {
		t.Fatalf("restart: %s", c2.Status().State)
	}
	st, err := client2.Unlock(ctx, created.UnlockKey)
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation != 2 || st.CAFingerprint != created.Status.CAFingerprint || len(st.Hosts) != 1 {
		t.Fatalf("after restart: %+v", st)
	}
	// The restarted one, running, learns the leases another coordinator
	// makes from the store's changes (a watch on either backend), not at
	// its next listing.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go c2.Run(runCtx)
	if _, err := enrol.Workload(ctx, client, webDev, api.Workload{Namespace: "web", Name: "second"}); err != nil {
		t.Fatal(err)
	}
	var hosts []api.Host
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && len(hosts) != 2; time.Sleep(10 * time.Millisecond) {
		hosts = c2.Status().Hosts
	}
	if len(hosts) != 2 || hosts[1].Workload != "web/second" && hosts[0].Workload != "web/second" {
		t.Fatalf("hosts seen by the other coordinator: %+v", hosts)
	}
	// A coordinator with no secrets of its own sees a mesh to recover.
	c3, _ := open(t.TempDir())
	if c3.Status().State != api.StateRecovering {
		t.Fatalf("fresh coordinator on a full etcd: %s", c3.Status().State)
	}
}
