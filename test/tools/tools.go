// Package tools finds the external servers the tests run for real (etcd, later
// kube-apiserver), built by `make tools` into .cache/bin.
package tools

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Bin returns the path of a tool built by `make tools`. Without it the test is
// skipped, or failed under CI=true, where skipping would hide it.
func Bin(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s, a built server: not in the unit tier (go test -short, make unit)", name)
	}
	dir := os.Getenv("SEALMESH_TOOLS_BIN")
	if dir == "" {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err == nil {
			dir = filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), ".cache", "bin")
		}
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		msg := fmt.Sprintf("%s not found at %s: run `make tools`", name, p)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// StartEtcd runs a real etcd on free loopback ports for the test, waits until it
// answers, and stops it (by the PID it started) when the test ends.
func StartEtcd(t testing.TB) string {
	t.Helper()
	bin := Bin(t, "etcd")
	client, peer := freeURL(t), freeURL(t)
	dir := t.TempDir()
	done, logPath := Run(t, dir, "etcd", bin, "--data-dir", filepath.Join(dir, "data"), "--name", "test",
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test="+peer, "--log-level", "error")
	health := client + "/health"
	for i := 0; ; i++ {
		resp, err := http.Get(health)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return client
			}
		}
		select {
		case <-done:
			t.Fatalf("etcd exited:\n%s", Tail(logPath))
		default:
		}
		if i > 200 {
			t.Fatalf("etcd did not come up: %v\n%s", err, Tail(logPath))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// EtcdOps is how many key-value requests the etcd at endpoint has served,
// by its own gRPC counters: of method (Range, Txn, Put, DeleteRange), or of
// all of them for "".
func EtcdOps(c *http.Client, endpoint, method string) (int, error) {
	resp, err := c.Get(endpoint + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "grpc_server_handled_total{") && strings.Contains(line, `grpc_service="etcdserverpb.KV"`) &&
			(method == "" || strings.Contains(line, `grpc_method="`+method+`"`)) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return 0, fmt.Errorf("etcd metrics: %q: %w", line, err)
			}
			n += int(v)
		}
	}
	return n, nil
}

// Run starts bin with args, logging to dir/name.log, and stops it by the PID it
// started (SIGTERM, then SIGKILL after 15 s) when the test ends. The channel
// closes when the process exits.
func Run(t testing.TB, dir, name, bin string, args ...string) (<-chan struct{}, string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	return done, logPath
}

// Tail returns the end of a log file.
func Tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

func freeURL(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// MeshPackages are the binaries test/mesh starts: sealmesh's and the
// reference plugins of the pods' primary network.
var MeshPackages = []string{
	"github.com/sealmesh/sealmesh/cmd/sealmesh-coordinator",
	"github.com/sealmesh/sealmesh/cmd/sealmesh-agent",
	"github.com/sealmesh/sealmesh/cmd/sealmesh-tunnel",
	"github.com/sealmesh/sealmesh/cmd/sealmesh-cni",
	"github.com/sealmesh/sealmesh/cmd/sealmesh-lighthouse",
	"github.com/sealmesh/sealmesh/cmd/meshctl",
	"github.com/containernetworking/plugins/plugins/main/bridge",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
}

// BuildMain builds pkgs (import paths) from this checkout into a temporary
// directory, static as the image has them, runs the package's tests with
// binDir set to it, removes it, and exits with their code: the TestMain of
// packages that run real binaries.
func BuildMain(m *testing.M, binDir *string, pkgs ...string) {
	flag.Parse()
	if testing.Short() {
		// The unit tier builds no binaries: these tests run in make test.
		fmt.Println("skipped in the unit tier (go test -short): runs built binaries")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "sealmesh-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*binDir = dir
	code := 1
	if out, err := BuildStatic(dir, pkgs...); err != nil {
		fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
	} else {
		code = m.Run()
	}
	// Profiling a test's processes needs their binaries after it ends
	// (perf report names symbols from them).
	if os.Getenv("SEALMESH_KEEP_TEST_BINARIES") == "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// BuildStatic builds pkgs (import paths) from this checkout into dir as the
// image builds them (Dockerfile, make image): static, without cgo. A
// dynamically linked binary also loads libc at every start; the CNI plugin
// and the tunnel start once per pod, and the benchmarks time those starts.
// On failure it returns the go command's output.
func BuildStatic(dir string, pkgs ...string) ([]byte, error) {
	cmd := exec.Command("go", append([]string{"build", "-trimpath", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.CombinedOutput()
}

// Root is the repository's top directory, found from this file's place in
// it (not the working directory, which go test sets per package).
func Root() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(f), "..", "..")
}
