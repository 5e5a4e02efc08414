package tools

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// KubeAPIServerArgs writes a kube-apiserver's keys and static admin token
// into dir and returns the arguments that run it over etcd, serving on
// bind:port, and the token.
func KubeAPIServerArgs(t testing.TB, dir, etcd, bind string, port int) ([]string, string) {
	t.Helper()
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyFile := write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}))
	pubFile := write("sa.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	tokens := write("tokens.csv", []byte(token+",sealmesh-test,sealmesh-test,system:masters\n"))
	return []string{
		"--etcd-servers", etcd,
		"--bind-address", bind, "--advertise-address", bind, "--secure-port", fmt.Sprint(port),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pubFile, "--service-account-signing-key-file", keyFile,
		"--token-auth-file", tokens, "--authorization-mode", "RBAC", "--allow-privileged=true",
		"--service-cluster-ip-range", "10.96.0.0/24", "--v", "1"}, token
}

// StartKubeAPIServer runs a real kube-apiserver on a free loopback port over a
// real etcd, with a static admin token, and stops both when the test ends. It
// returns a client configuration for it.
func StartKubeAPIServer(t testing.TB) *rest.Config {
	t.Helper()
	bin := Bin(t, "kube-apiserver")
	etcd := StartEtcd(t)
	dir := t.TempDir()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	args, token := KubeAPIServerArgs(t, dir, etcd, "127.0.0.1", port)
	done, logPath := Run(t, dir, "kube-apiserver", bin, args...)

	host := fmt.Sprintf("https://127.0.0.1:%d", port)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("kube-apiserver exited:\n%s", Tail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 90s (%v):\n%s", err, Tail(logPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The serving certificate is self-signed in the test's own directory;
	// nothing else trusts it.
	return &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
}

// CreateNamespace makes a namespace on the test's API server.
func CreateNamespace(t testing.TB, cfg *rest.Config, name string) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
