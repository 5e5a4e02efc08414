package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/node"
	"github.com/sealmesh/sealmesh/agent/node/nodetest"
)

// TestChainedThroughTheAgent: sealmesh-cni as a runtime runs it (this test
// binary, exec'd with the CNI environment), against the real agent's socket
// over a real coordinator, with tunnels and namespaces faked (they need root):
// ADD prints the previous result with the Nebula interface and its addresses
// appended, at every cniVersion; CHECK and DEL succeed.
func TestChainedThroughTheAgent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/x")
	a := node.New(node.Config{Log: slog.New(slog.DiscardHandler), Coordinator: m.Client, Issuer: m.Dev, StateDir: t.TempDir(), Tunnels: f, Netns: f})
	socket := filepath.Join(t.TempDir(), "agent.sock")
	go a.Serve(ctx, socket)
	for deadline := time.Now().Add(time.Minute); !a.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the agent's socket is not up within a minute")
		}
	}

	run := func(command, container string, stdin []byte) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SEALMESH_CNI_MAIN=1", "CNI_COMMAND="+command, "CNI_CONTAINERID="+container,
			"CNI_NETNS=/run/netns/x", "CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin", "CNI_ARGS=K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p")
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return string(out), fmt.Errorf("%v: %s %s", err, out, stderr.String())
		}
		return string(out), nil
	}
	for _, v := range versions {
		t.Run(v, func(t *testing.T) {
			container := "c-" + strings.ReplaceAll(v, ".", "")
			stdin := conf(v, socket, true)
			out, err := run("ADD", container, stdin)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			var res struct {
				CNIVersion string `json:"cniVersion"`
				Interfaces []struct {
					Name, Sandbox string
				} `json:"interfaces"`
				IPs []struct {
					Address   string `json:"address"`
					Interface *int   `json:"interface"`
				} `json:"ips"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("ADD printed %q: %v", out, err)
			}
			if res.CNIVersion != v || len(res.Interfaces) != 2 || res.Interfaces[1].Name != "nebula1" || res.Interfaces[1].Sandbox != "/run/netns/x" {
				t.Fatalf("ADD result %s", out)
			}
			var nebula []string
			for _, ip := range res.IPs {
				if ip.Interface != nil && *ip.Interface == 1 {
					nebula = append(nebula, ip.Address)
				}
			}
			if len(nebula) != 2 || !strings.HasPrefix(nebula[0], "10.42.") || !strings.HasPrefix(nebula[1], "fd42:42:") {
				t.Fatalf("the Nebula interface's addresses %v in %s", nebula, out)
			}
			// CHECK and DEL get the configuration with the result ADD printed.
			var withPrev map[string]any
			json.Unmarshal(stdin, &withPrev)
			var prev map[string]any
			json.Unmarshal([]byte(out), &prev)
			withPrev["prevResult"] = prev
			after, _ := json.Marshal(withPrev)
			if _, err := run("CHECK", container, after); err != nil {
				t.Fatalf("CHECK: %v", err)
			}
			if _, err := run("DEL", container, after); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
	}
	if n := m.Hosts(); n != 0 {
		t.Fatalf("%d leases left after every DEL", n)
	}
}

// TestAgentSkipsThePod: when the agent answers that a pod is not to be
// attached (here its namespace is excluded in the agent's configuration,
// not the plugin's), the plugin passes the previous result through and no
// address is leased.
func TestAgentSkipsThePod(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := nodetest.NewMesh(t, "1h")
	f := nodetest.NewFakeNode("/run/netns/x")
	a := node.New(node.Config{Log: slog.New(slog.DiscardHandler), Coordinator: m.Client, Issuer: m.Dev, StateDir: t.TempDir(),
		Tunnels: f, Netns: f, ExcludeNamespaces: []string{"ns"}})
	socket := filepath.Join(t.TempDir(), "agent.sock")
	go a.Serve(ctx, socket)
	for deadline := time.Now().Add(time.Minute); !a.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the agent's socket is not up within a minute")
		}
	}
	out, err := runPlugin(t, "ADD", conf("1.1.0", socket, true), "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p")
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	if strings.Contains(out, "nebula1") || !strings.Contains(out, "10.244.0.5/24") {
		t.Fatalf("ADD result %s, want the previous result unchanged", out)
	}
	if n := m.Hosts(); n != 0 || f.Starts() != 0 {
		t.Fatalf("%d leases and %d tunnels for a skipped pod", n, f.Starts())
	}
}
