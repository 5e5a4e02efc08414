package cniinstall_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/sealmesh/sealmesh/agent/cniinstall"
	"github.com/sealmesh/sealmesh/test/tools"
)

// Against a real kube-apiserver: the agent's DaemonSet present (a rolling
// update) means keep the plugin; being deleted, or gone (helm uninstall),
// means take it out.
func TestDaemonSetGone(t *testing.T) {
	cs, err := kubernetes.NewForConfig(tools.StartKubeAPIServer(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	labels := map[string]string{"app": "sealmesh-agent"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "sealmesh-agent", Namespace: "default", Finalizers: []string{"sealmesh.test/hold"}},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "sealmesh"}}},
			},
		},
	}
	if _, err := cs.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	check := func(want bool, when string) {
		t.Helper()
		gone, err := cniinstall.DaemonSetGone(ctx, cs, "default", "sealmesh-agent")
		if err != nil || gone != want {
			t.Fatalf("%s: gone %v (%v), want %v", when, gone, err, want)
		}
	}
	check(false, "DaemonSet present")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := cniinstall.WatchDaemonSet(wctx, cs, "default", "sealmesh-agent", slog.New(slog.NewTextHandler(io.Discard, nil)))
	time.Sleep(500 * time.Millisecond) // the watch is established (not a timing goal)
	if w.Gone() {
		t.Fatal("the watch saw a present DaemonSet gone")
	}
	// helm uninstall: the DaemonSet goes first, then the Role that let
	// install-cni read it. The watch saw the first.
	if err := cs.AppsV1().DaemonSets("default").Delete(ctx, "sealmesh-agent", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); !w.Gone(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watch did not see the DaemonSet being deleted")
		}
	}
	check(true, "DaemonSet being deleted")
	if _, err := cs.AppsV1().DaemonSets("default").Patch(ctx, "sealmesh-agent", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	check(true, "DaemonSet gone")
}
