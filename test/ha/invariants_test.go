package ha

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest/simulated"
)

// TestKeysOnlyBetweenCoordinators runs invariants A and B with real processes:
// a coordinator binary running a worker's image joins the cluster and asks for
// keys (refused, nothing sent); an impostor coordinator, attesting with an
// image the manifest does not name and serving a mesh of its own, is the only
// ready peer a recovering coordinator finds (refused, nothing used).
func TestKeysOnlyBetweenCoordinators(t *testing.T) {
	l := newLab(t, 3)
	l.start(0, l.state(0))
	if err := l.wait(func() error { return l.get("http://" + ip(0) + ":7081/healthz") }, "c1 up"); err != nil {
		t.Fatal(err)
	}
	l.create()
	l.waitReady(t, 0)

	t.Run("invariant A: a worker's image asking for keys gets nothing", func(t *testing.T) {
		worker := l.path("worker-tee")
		if err := l.workload.Save(worker); err != nil {
			t.Fatal(err)
		}
		l.startWith(1, l.state(1), worker, "etcd:http://"+etcdIP+":2379")
		defer l.kill(1)
		if err := l.wait(func() error {
			if count(t, l, 0, "peer key request refused") == 0 {
				return fmt.Errorf("c1 has not refused yet")
			}
			return nil
		}, "c1 refusing the worker"); err != nil {
			t.Fatal(err)
		}
		if !logHas(t, l, 0, "not a coordinator of manifest") || logHas(t, l, 0, "seed handed to an attested coordinator") {
			t.Fatal("c1 did not refuse the worker for its role, or handed the seed out")
		}
		st, err := l.status(0)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.ready(1); err == nil {
			t.Fatalf("the worker's coordinator became ready (cluster: %+v)", st.Members)
		}
	})

	t.Run("invariant B: a peer with an image not in the manifest is not used", func(t *testing.T) {
		// The impostor: a coordinator binary in a TEE whose image the
		// manifest does not name, ready with a mesh (and seed) of its own.
		evil, err := simulated.New(simulated.MeasurementOf("evil-coordinator"))
		if err != nil {
			t.Fatal(err)
		}
		evilTEE := l.path("evil-tee")
		if err := evil.Save(evilTEE); err != nil {
			t.Fatal(err)
		}
		l.startWith(2, l.path("evil-state"), evilTEE, "file:"+l.path("evil-store"))
		defer l.kill(2)
		if err := l.wait(func() error { return l.get("http://" + ip(2) + ":7081/healthz") }, "impostor up"); err != nil {
			t.Fatal(err)
		}
		// Its own mesh, so it announces itself ready.
		saved := l.policy
		l.policy = evilPolicy(evil)
		_, err = l.setManifestAt(2)
		l.policy = saved
		if err != nil {
			t.Fatal(err)
		}
		l.waitReady(t, 2)

		// The genuine coordinator stops; a genuine replacement without
		// secrets finds only the impostor ready.
		l.kill(0)
		l.start(1, l.path("c2-fresh-state"))
		defer l.kill(1)
		if err := l.wait(func() error {
			if count(t, l, 1, "not as the policy requires") == 0 {
				return fmt.Errorf("c2 has not refused the impostor yet")
			}
			return nil
		}, "c2 refusing the impostor"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		st, err := l.status(1)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != api.StateRecovering || logHas(t, l, 1, "recovered the seed from a peer") {
			t.Fatalf("c2 with only an impostor to ask: %s (%s)", st.State, st.Message)
		}
		// The genuine coordinator returns (sealed state): c2 recovers from it.
		l.start(0, l.state(0))
		l.waitReady(t, 1)
		if !logHas(t, l, 1, "recovered the seed from a peer") {
			t.Fatal("c2 ready without recovering from the genuine peer")
		}
		genuine, _ := l.status(0)
		got, _ := l.status(1)
		if genuine == nil || got == nil || got.CAFingerprint != genuine.CAFingerprint {
			t.Fatalf("c2's CA %v, the mesh's %v", got, genuine)
		}
	})
}

func (l *lab) setManifestAt(i int) (*api.ManifestResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := l.manifestRequest("1h", "")
	if err != nil {
		return nil, err
	}
	return l.client(apiURL(i)).SetManifest(ctx, req)
}
