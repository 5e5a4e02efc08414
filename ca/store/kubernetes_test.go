package store_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sealmesh/sealmesh/ca/store"
	"github.com/sealmesh/sealmesh/ca/store/storetest"
	"github.com/sealmesh/sealmesh/test/tools"
)

// TestKubernetesConformance runs the suite against a real kube-apiserver (and
// its etcd) on loopback, not a fake.
func TestKubernetesConformance(t *testing.T) {
	cfg := tools.StartKubeAPIServer(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sealmesh"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
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
