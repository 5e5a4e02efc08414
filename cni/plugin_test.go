package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// Each test runs at every supported cniVersion, as the reference plugins' tests do.
var versions = []string{"0.4.0", "1.0.0", "1.1.0"}

func conf(v, socket string, prev bool) []byte {
	prevResult := ""
	if prev {
		switch v {
		case "0.4.0":
			prevResult = `, "prevResult": {"cniVersion": "0.4.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}], "ips": [{"version": "4", "address": "10.244.0.5/24", "interface": 0}]}`
		default:
			prevResult = fmt.Sprintf(`, "prevResult": {"cniVersion": %q, "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}], "ips": [{"address": "10.244.0.5/24", "interface": 0}]}`, v)
		}
	}
	return []byte(fmt.Sprintf(`{"cniVersion": %q, "name": "pods", "type": "sealmesh-cni", "agentSocket": %q%s}`, v, socket, prevResult))
}

func args(stdin []byte) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: "c1", Netns: "/run/netns/x", IfName: "eth0", Args: "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p", StdinData: stdin}
}

func code(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestErrorsWithoutAgent(t *testing.T) {
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			socket := filepath.Join(t.TempDir(), "absent.sock")
			tests := []struct {
				name     string
				run      func(*skel.CmdArgs) error
				stdin    []byte
				wantCode uint // 0: success
			}{
				{"ADD without prevResult is a config error", Add, conf(v, socket, false), types.ErrInvalidNetworkConfig},
				{"ADD with the agent down says try again later", Add, conf(v, socket, true), types.ErrTryAgainLater},
				{"DEL with the agent down succeeds", Del, conf(v, socket, true), 0},
				{"DEL without prevResult succeeds", Del, conf(v, socket, false), 0},
				{"CHECK of a pod ADD passed through (no Nebula interface) succeeds", Check, conf(v, socket, true), 0},
				{"STATUS with the agent down: not available", Status, conf(v, socket, false), types.ErrPluginNotAvailable},
				{"GC with the agent down succeeds (nothing runs to collect)", GC, conf(v, socket, false), 0},
				{"garbage config", Add, []byte("{"), types.ErrDecodingFailure},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					err := tt.run(args(tt.stdin))
					if tt.wantCode == 0 {
						if err != nil {
							t.Fatalf("got %v, want success", err)
						}
						return
					}
					if code(err) != tt.wantCode {
						t.Fatalf("got %v (code %d), want code %d", err, code(err), tt.wantCode)
					}
				})
			}
		})
	}
}

// The plugin as a runtime runs it: this test binary re-run with
// SEALMESH_CNI_MAIN set is sealmesh-cni.
func TestMain(m *testing.M) {
	if os.Getenv("SEALMESH_CNI_MAIN") != "" {
		Main("test")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Finding 15 of the attack review: stdin was read whole (200 MB took 420
// MB of memory). Past MaxConfig the plugin refuses before reading more.
func TestStdinBounded(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "absent.sock")
	run := func(stdin io.Reader) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SEALMESH_CNI_MAIN=1", "CNI_COMMAND=DEL", "CNI_CONTAINERID=c1",
			"CNI_NETNS=/run/netns/x", "CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin")
		cmd.Stdin = stdin
		out, err := cmd.Output()
		return string(out), err
	}
	small := conf("1.1.0", socket, true)
	if out, err := run(bytes.NewReader(small)); err != nil {
		t.Fatalf("DEL with a normal configuration: %v (%s)", err, out)
	}
	// Valid JSON to its end (padding inside a string), one byte too long.
	pad := MaxConfig + 1 - len(small) - len(`, "pad": ""`)
	big := append(small[:len(small)-1:len(small)-1], []byte(`, "pad": "`+strings.Repeat("x", pad)+`"}`)...)
	if len(big) != MaxConfig+1 {
		t.Fatalf("built %d bytes", len(big))
	}
	out, err := run(bytes.NewReader(big))
	if err == nil || !strings.Contains(out, "more than") {
		t.Fatalf("DEL with %d bytes of configuration: %v, %s", len(big), err, out)
	}
	// An endless stdin: refused after MaxConfig+1 bytes, not read to the end.
	if out, err := run(endless{}); err == nil || !strings.Contains(out, "more than") {
		t.Fatalf("endless stdin: %v, %s", err, out)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestRequestFromArgs(t *testing.T) {
	c, err := parseConf(conf("1.0.0", "/s", true))
	if err != nil {
		t.Fatal(err)
	}
	r := request(args(nil), c)
	if r.PodNamespace != "ns" || r.PodName != "p" || r.IfName != "nebula1" || r.ContainerID != "c1" || r.Netns != "/run/netns/x" {
		t.Fatalf("request = %+v", r)
	}
}

// Pods in excluded namespaces pass through without the agent: ADD prints the
// previous result unchanged even with no agent running (the coordinators'
// own pods start while nothing can enrol them).
func TestExcludedNamespacePassesThrough(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "absent.sock")
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			var c map[string]any
			if err := json.Unmarshal(conf(v, socket, true), &c); err != nil {
				t.Fatal(err)
			}
			c["excludeNamespaces"] = []string{"kube-system", "ns"}
			stdin, _ := json.Marshal(c)
			out, err := runPlugin(t, "ADD", stdin, "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p")
			if err != nil {
				t.Fatalf("ADD in an excluded namespace with no agent: %v", err)
			}
			var res struct {
				CNIVersion string           `json:"cniVersion"`
				Interfaces []map[string]any `json:"interfaces"`
				IPs        []map[string]any `json:"ips"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("ADD printed %q: %v", out, err)
			}
			if res.CNIVersion != v || len(res.Interfaces) != 1 || res.Interfaces[0]["name"] != "eth0" || len(res.IPs) != 1 || res.IPs[0]["address"] != "10.244.0.5/24" {
				t.Fatalf("ADD result %s, want the previous result unchanged", out)
			}
			// Another namespace still needs the agent.
			if _, err := runPlugin(t, "ADD", stdin, "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=p"); err == nil {
				t.Fatal("ADD in a namespace not excluded succeeded with no agent")
			}
		})
	}
}

// runPlugin runs this test binary as sealmesh-cni, as a runtime does.
func runPlugin(t *testing.T, command string, stdin []byte, cniArgs string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SEALMESH_CNI_MAIN=1", "CNI_COMMAND="+command, "CNI_CONTAINERID=c1",
		"CNI_NETNS=/run/netns/x", "CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin", "CNI_ARGS="+cniArgs)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%v: %s", err, out)
	}
	return string(out), nil
}

// sealmesh-cni run by hand reports its version (issue 28); the runtime's
// VERSION command stays CNI's.
func TestVersionByHand(t *testing.T) {
	for _, arg := range []string{"--version", "version"} {
		cmd := exec.Command(os.Args[0], arg)
		cmd.Env = append(os.Environ(), "SEALMESH_CNI_MAIN=1", "CNI_COMMAND=")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "sealmesh-cni version test\n") || !strings.Contains(string(out), "go:") {
			t.Errorf("sealmesh-cni %s: %v\n%s", arg, err, out)
		}
	}
}
