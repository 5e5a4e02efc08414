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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	UID            string
	Node           string
	ServiceAccount string
}

// Pod reads one pod (the node agent needs get on pods; list and watch are not
// needed).
func (c *Cluster) Pod(ctx context.Context, namespace, name string) (Pod, error) {
	p, err := c.cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Pod{}, err
	}
	return Pod{UID: string(p.UID), Node: p.Spec.NodeName, ServiceAccount: p.Spec.ServiceAccountName}, nil
}

// RESTConfig is how a sealmesh process reaches the API server: in-cluster
// credentials in a pod, else the kubeconfig $KUBECONFIG names.
func RESTConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
}
