package ha

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/test/netlab"
	"github.com/sealmesh/sealmesh/test/tools"
)

// freeAddr is a loopback address nothing listens on (as of now).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestStoreUnreachableAtStart: a coordinator whose etcd cannot be reached
// serves its health port (/healthz 200, /readyz 503 "starting"), logs where
// it is trying to connect, and comes up once etcd does. Before, New read the
// store before the health server started, and the process hung silently
// with no health port while etcd was down.
func TestStoreUnreachableAtStart(t *testing.T) {
	dir := t.TempDir()
	etcdAddr, listen, health := freeAddr(t), freeAddr(t), freeAddr(t)
	logPath := filepath.Join(dir, "coordinator.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(filepath.Join(binDir, "sealmesh-coordinator"), "--store", "etcd:"+etcdAddr,
		"--listen", listen, "--health-listen", health, "--state-dir", filepath.Join(dir, "state"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlab.Stop(cmd, 5*time.Second) })

	get := func(path string) (int, string, error) {
		resp, err := http.Get("http://" + health + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), nil
	}
	// The deadline only turns a hang into a failure: each step takes
	// seconds (the retries back off to 30 s).
	until := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); !ok(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 2 minutes:\n%s", what, tools.Tail(logPath))
			}
		}
	}
	until("health port up", func() bool { code, _, err := get("/healthz"); return err == nil && code == http.StatusOK })
	code, body, err := get("/readyz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "starting") {
		t.Fatalf("/readyz with etcd down = %d %q, %v; want 503 starting", code, body, err)
	}
	until("logs the store it connects to", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "connecting to store etcd:"+etcdAddr)
	})

	// etcd comes up at that address: the coordinator retries and starts.
	_, port, _ := net.SplitHostPort(etcdAddr)
	peer := "http://" + freeAddr(t)
	etcd := exec.Command(tools.Bin(t, "etcd"), "--data-dir", filepath.Join(dir, "etcd"), "--name", "start",
		"--listen-client-urls", "http://"+etcdAddr, "--advertise-client-urls", "http://"+etcdAddr,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "start="+peer, "--log-level", "error")
	etcd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlab.Stop(etcd, 5*time.Second) })
	until(fmt.Sprintf("starts once etcd listens on port %s", port), func() bool {
		_, body, err := get("/readyz")
		return err == nil && strings.HasPrefix(body, "waiting-for-manifest")
	})
}
