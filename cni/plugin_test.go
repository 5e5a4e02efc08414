package cni

import (
	"errors"
	"fmt"
	"path/filepath"
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
				{"CHECK without our interface fails", Check, conf(v, socket, true), types.ErrInternal},
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
