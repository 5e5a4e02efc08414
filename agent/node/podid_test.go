package node

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/kube"
	"github.com/sealmesh/sealmesh/test/tools"
)

// The agent speaks for a pod only if the Kubernetes API says it runs on this
// node with the UID the runtime gave; it then names the pod's service account.
// Checked against a real kube-apiserver.
func TestPodIdentity(t *testing.T) {
	ctx := context.Background()
	cfg := tools.StartKubeAPIServer(t)
	tools.CreateNamespace(t, cfg, "shop")
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name, node string) string {
		p, err := cs.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: "web",
				Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(p.UID)
	}
	here, elsewhere := pod("web-0", "node-a"), pod("web-1", "node-b")
	// No coordinator answers: a pod that passes the check fails at enrolment
	// instead, which shows the check came first and let it through.
	a := kubeAgent(t, cfg, nil)

	tests := []struct {
		name, pod, uid, want string
	}{
		{"the pod on this node", "web-0", here, "127.0.0.1:1"},
		{"a wrong UID (a pod of the same name replaced)", "web-0", elsewhere, "pod identity: pod shop/web-0 has UID"},
		{"a pod on another node", "web-1", elsewhere, `runs on node "node-b", not on this node "node-a"`},
		{"a pod that does not exist", "web-9", here, "pod identity: pod shop/web-9"},
		{"no pod identity from the runtime", "", "", "passed no K8S_POD_NAMESPACE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &cniapi.Request{ContainerID: "c1", Netns: "/run/netns/none", IfName: "nebula1", MTU: 1300,
				PodNamespace: "shop", PodName: tt.pod, PodUID: tt.uid}
			if tt.pod == "" {
				r.PodNamespace = ""
			}
			_, err := a.Add(ctx, r)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Add: %v, want %q", err, tt.want)
			}
		})
	}
	p, err := a.checkPod(ctx, &cniapi.Request{PodNamespace: "shop", PodName: "web-0", PodUID: here})
	if err != nil || p.ServiceAccount != "web" {
		t.Fatalf("service account %q, %v; want web", p.ServiceAccount, err)
	}
}

// kubeAgent is an agent on node-a of the cluster at cfg (pods checked
// against it) whose coordinator never answers: a pod the agent lets through
// fails at enrolment, one it skips succeeds without asking. edit adjusts
// the configuration.
func kubeAgent(t *testing.T, cfg *rest.Config, edit func(*Config)) *Agent {
	t.Helper()
	cluster, err := kube.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := simulated.New(simulated.MeasurementOf("sealmesh-workload"))
	if err != nil {
		t.Fatal(err)
	}
	c := Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Coordinator: api.NewClient("http://127.0.0.1:1"), Retry: enrol.Retry{Rounds: 1},
		Issuer: dev, StateDir: t.TempDir(), Pods: cluster, NodeName: "node-a"}
	if edit != nil {
		edit(&c)
	}
	return New(c)
}
