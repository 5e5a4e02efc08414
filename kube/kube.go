// Package kube is what sealmesh asks of a Kubernetes API server: for the
// coordinator verifying service-account tokens, the issuer's signing keys and
// whether a pod still exists (SPIRE's k8s_psat asks the same); for the node
// agent, whether the pod the runtime names exists on its node, and as whom.
package kube

import (
	"context"
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sealmesh/sealmesh/attest"
)

// Cluster implements attest.Cluster with client-go.
type Cluster struct {
	cs kubernetes.Interface
	// JWKSFile, when set, is the issuer's key set as a file, for clusters
	// whose key set endpoint this coordinator cannot read.
	JWKSFile string
}

var _ attest.Cluster = (*Cluster)(nil)

// New uses cfg (in-cluster or a kubeconfig) to reach the API server. The
// coordinator needs get on pods and on the service-account issuer's key set
// (system:service-account-issuer-discovery).
func New(cfg *rest.Config) (*Cluster, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	return &Cluster{cs: cs}, nil
}

// JWKS fetches the key set from the API server itself, with the coordinator's
// credentials: the issuer URL in tokens usually is not reachable, and the key set
// endpoint may need authentication.
func (c *Cluster) JWKS(ctx context.Context) ([]byte, error) {
	if c.JWKSFile != "" {
		return os.ReadFile(c.JWKSFile)
	}
	b, err := c.cs.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("kube: /openid/v1/jwks: %w", err)
	}
	return b, nil
}

// PodUID implements attest.Cluster.
func (c *Cluster) PodUID(ctx context.Context, namespace, name string) (string, error) {
	p, err := c.Pod(ctx, namespace, name)
	return p.UID, err
}

// Pod is what the API server says of one pod.
type Pod struct {
	Namespace, Name string
	UID             string
	Node            string
	ServiceAccount  string
	// HostNetwork pods share the node's network: nothing to attach.
	HostNetwork bool
	Annotations map[string]string
	Running     bool
}

// Pod reads one pod (the node agent needs get on pods; list and watch are not
// needed).
func (c *Cluster) Pod(ctx context.Context, namespace, name string) (Pod, error) {
	p, err := c.cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Pod{}, err
	}
	return podOf(p), nil
}

func podOf(p *corev1.Pod) Pod {
	return Pod{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Node: p.Spec.NodeName, ServiceAccount: p.Spec.ServiceAccountName,
		HostNetwork: p.Spec.HostNetwork, Annotations: p.Annotations, Running: p.Status.Phase == corev1.PodRunning}
}

// RunningOn lists the running pods on node (the node agent needs list on
// pods; the field selector keeps the answer to its own node).
func (c *Cluster) RunningOn(ctx context.Context, node string) ([]Pod, error) {
	list, err := c.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.AndSelectors(fields.OneTermEqualSelector("spec.nodeName", node),
			fields.OneTermEqualSelector("status.phase", string(corev1.PodRunning))).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("kube: pods on node %s: %w", node, err)
	}
	out := make([]Pod, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, podOf(&list.Items[i]))
	}
	return out, nil
}

// Event records a Warning event on pod, from component (as kubectl describe
// shows it).
func (c *Cluster) Event(ctx context.Context, p Pod, component, reason, message string) error {
	now := metav1.Now()
	_, err := c.cs.CoreV1().Events(p.Namespace).Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: p.Name + "."},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name,
			UID: types.UID(p.UID)},
		Reason: reason, Message: message, Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: component, Host: p.Node},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("kube: event on pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// DeletePod deletes pod, only if it is still the one with its UID: its
// controller makes it again, through the CNI chain as it is now.
func (c *Cluster) DeletePod(ctx context.Context, p Pod) error {
	uid := types.UID(p.UID)
	err := c.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil {
		return fmt.Errorf("kube: delete pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// RESTConfig is how a sealmesh process reaches the API server: in-cluster
// credentials in a pod, else the kubeconfig $KUBECONFIG names.
func RESTConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
}
