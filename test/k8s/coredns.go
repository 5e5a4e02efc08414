package k8s

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// CoreDNSImage is the cluster DNS's image, CoreDNS built from its module.
const CoreDNSImage = "registry.k8s.io/coredns/coredns:e2e"

// CoreDNS deploys the cluster's DNS, as clusters run it: a Deployment
// answering for cluster.local from the API (the kubernetes plugin) behind
// the Service at DNSIP. Nothing is forwarded: this cluster has no upstream.
func (c *Cluster) CoreDNS() error {
	path := filepath.Join(c.Dir, "coredns.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(coreDNS, CoreDNSImage, DNSIP)), 0o644); err != nil {
		return err
	}
	if _, err := c.Kubectl("apply", "-f", path); err != nil {
		return err
	}
	return c.WaitFor("CoreDNS ready", 3*time.Minute, func() error {
		return podsReady(c, "kube-system", "k8s-app=kube-dns", 1)
	})
}

// podsReady checks that n pods matching selector are Ready.
func podsReady(c *Cluster, ns, selector string, n int) error {
	out, err := c.Kubectl("-n", ns, "get", "pods", "-l", selector, "-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {end}`)
	if err != nil {
		return err
	}
	if got := strings.Count(out, "True"); got != n {
		return fmt.Errorf("%s: %d of %d ready (%q)", selector, got, n, out)
	}
	return nil
}

const coreDNS = `apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 5
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
        - name: coredns
          image: %s
          imagePullPolicy: Never
          args: [-conf, /etc/coredns/Corefile]
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
          readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
      volumes:
        - name: config
          configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: %s
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
`
