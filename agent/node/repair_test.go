package node

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/test/tools"
)

// TestOptOutAndUnattached, against a real kube-apiserver: pods annotated
// sealmesh.io/attach: "false", hostNetwork pods and pods of an excluded
// namespace are passed through without enrolment; running pods that the
// chain should have attached and did not are reported with an event and
// the gauge, and deleted when the agent is told to.
func TestOptOutAndUnattached(t *testing.T) {
	ctx := context.Background()
	cfg := tools.StartKubeAPIServer(t)
	tools.CreateNamespace(t, cfg, "shop") // kube-system is there
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// No controller manager runs to make the default service accounts.
	for _, ns := range []string{"shop", "kube-system"} {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	type spec struct {
		ns, name    string
		annotations map[string]string
		hostNetwork bool
		running     bool
	}
	uids := map[string]string{}
	for _, s := range []spec{
		{"shop", "opted-out", map[string]string{cniapi.AttachAnnotation: "false"}, false, true},
		{"shop", "host", nil, true, true},
		{"kube-system", "coredns", nil, false, true},
		{"shop", "early", nil, false, true},    // started before the plugin: unattached
		{"shop", "pending", nil, false, false}, // its ADD has not finished
		{"shop", "opted-in", map[string]string{cniapi.AttachAnnotation: "true"}, false, false},
	} {
		p, err := cs.CoreV1().Pods(s.ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: s.name, Annotations: s.annotations},
			Spec: corev1.PodSpec{NodeName: "node-a", HostNetwork: s.hostNetwork,
				Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.running {
			p.Status.Phase = corev1.PodRunning
			if _, err := cs.CoreV1().Pods(s.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		uids[s.ns+"/"+s.name] = string(p.UID)
	}
	newAgent := func(del bool) *Agent {
		return kubeAgent(t, cfg, func(c *Config) {
			c.Repair = c.Pods.(Repairer)
			c.ExcludeNamespaces, c.DeleteUnattached = []string{"kube-system"}, del
		})
	}
	a := newAgent(false)
	for _, tt := range []struct {
		pod, skipped string
	}{
		{"shop/opted-out", "annotated"},
		{"shop/host", "hostNetwork"},
		{"kube-system/coredns", "namespace is excluded"},
		{"shop/opted-in", ""},
	} {
		ns, name, _ := strings.Cut(tt.pod, "/")
		res, err := a.Add(ctx, &cniapi.Request{ContainerID: "c-" + name, Netns: "/run/netns/none", IfName: "nebula1", MTU: 1300,
			PodNamespace: ns, PodName: name, PodUID: uids[tt.pod]})
		switch {
		case tt.skipped == "" && (err == nil || !strings.Contains(err.Error(), "127.0.0.1:1")):
			t.Errorf("%s: %v, %+v; want an enrolment attempt", tt.pod, err, res)
		case tt.skipped != "" && (err != nil || !strings.Contains(res.Skipped, tt.skipped)):
			t.Errorf("%s: %v, %+v; want skipped (%s)", tt.pod, err, res, tt.skipped)
		}
	}

	// Reported: only shop/early (running, not skipped, not attached).
	a.checkUnattached(ctx)
	if got := value(a.metrics.unattached); got != 1 {
		t.Fatalf("sealmesh_agent_unattached_pods = %v, want 1", got)
	}
	events := func() []string {
		list, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "reason=" + ReasonNotAttached})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range list.Items {
			out = append(out, e.InvolvedObject.Namespace+"/"+e.InvolvedObject.Name)
		}
		return out
	}
	if got := events(); len(got) != 1 || got[0] != "shop/early" {
		t.Fatalf("events on %v, want one on shop/early", got)
	}
	a.checkUnattached(ctx) // once per pod
	if got := events(); len(got) != 1 {
		t.Fatalf("events on %v after a second round, want still one", got)
	}
	if _, err := cs.CoreV1().Pods("shop").Get(ctx, "early", metav1.GetOptions{}); err != nil {
		t.Fatalf("reporting deleted the pod: %v", err)
	}

	// Told to delete: the pod goes (its controller would make it again).
	r := newAgent(true)
	r.checkUnattached(ctx)
	// Deleted gracefully: with no kubelet to confirm, it stays, marked.
	if p, err := cs.CoreV1().Pods("shop").Get(ctx, "early", metav1.GetOptions{}); err == nil && p.DeletionTimestamp == nil {
		t.Fatal("shop/early not deleted with DeleteUnattached")
	}
	if got := value(r.metrics.repaired); got != 1 {
		t.Fatalf("deleted counter %v, want 1", got)
	}
	for _, p := range []string{"opted-out", "host", "pending"} {
		if got, err := cs.CoreV1().Pods("shop").Get(ctx, p, metav1.GetOptions{}); err != nil || got.DeletionTimestamp != nil {
			t.Errorf("shop/%s deleted: %v", p, err)
		}
	}
}

func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if g := d.GetGauge(); g != nil {
		return g.GetValue()
	}
	return d.GetCounter().GetValue()
}
