package store_test

import (
	"fmt"
	"testing"

	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/store/storetest"
	"github.com/sealmesh/sealmesh/test/tools"
)

// TestKubernetesConformance runs the suite against a real kube-apiserver (and
// its etcd) on loopback, not a fake.
func TestKubernetesConformance(t *testing.T) {
	cfg := tools.StartKubeAPIServer(t)
	tools.CreateNamespace(t, cfg, "sealmesh")
	n := 0
	storetest.Conformance(t, func(t *testing.T) store.Store {
		n++ // a fresh store name per subtest: an empty store in the same namespace
		s, err := store.OpenKubernetes(cfg, "sealmesh", fmt.Sprintf("sm%d", n))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
