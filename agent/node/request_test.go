package node

import (
	"slices"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/agent/cniapi"
)

// Finding 15 of the attack review: the agent accepted any MTU and
// unvalidated pod names from its socket.
func TestValidateRequest(t *testing.T) {
	good := cniapi.Request{ContainerID: "c0ffee", Netns: "/var/run/netns/x", IfName: "nebula1", AttachIfName: "eth0",
		PodNamespace: "shop", PodName: "web-0.canary", PodUID: "0b6c2c5e-4f0e-4d5a-9d8b-1f2e3d4c5b6a", MTU: 1400, Network: "k8s-pod-network"}
	if err := validate(&good); err != nil {
		t.Fatalf("a good request: %v", err)
	}
	for _, tc := range []struct {
		name string
		set  func(*cniapi.Request)
		want string
	}{
		{"container ID with a slash", func(r *cniapi.Request) { r.ContainerID = "../etc" }, "containerID"},
		{"interface name too long", func(r *cniapi.Request) { r.IfName = strings.Repeat("n", 16) }, "ifName"},
		{"attach name with a space", func(r *cniapi.Request) { r.AttachIfName = "eth 0" }, "attachIfName"},
		{"MTU negative", func(r *cniapi.Request) { r.MTU = -1 }, "mtu"},
		{"MTU too small", func(r *cniapi.Request) { r.MTU = 68 }, "mtu"},
		{"MTU too large", func(r *cniapi.Request) { r.MTU = 1 << 20 }, "mtu"},
		{"namespace upper case", func(r *cniapi.Request) { r.PodNamespace = "Shop" }, "podNamespace"},
		{"namespace too long", func(r *cniapi.Request) { r.PodNamespace = strings.Repeat("a", 64) }, "podNamespace"},
		{"pod name with a newline", func(r *cniapi.Request) { r.PodName = "web\nlevel=ERROR" }, "podName"},
		{"pod name with a slash", func(r *cniapi.Request) { r.PodName = "prod/db-0" }, "podName"},
		{"pod name too long", func(r *cniapi.Request) { r.PodName = strings.Repeat("a", 254) }, "podName"},
		{"UID with quotes", func(r *cniapi.Request) { r.PodUID = `"x"` }, "podUID"},
		{"network name too long", func(r *cniapi.Request) { r.Network = strings.Repeat("n", 256) }, "network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.set(&r)
			if err := validate(&r); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error naming %s", err, tc.want)
			}
		})
	}
	for _, ok := range []func(*cniapi.Request){
		func(r *cniapi.Request) { r.MTU = 0 },
		func(r *cniapi.Request) { r.PodNamespace, r.PodName, r.PodUID = "", "", "" }, // not Kubernetes
	} {
		r := good
		ok(&r)
		if err := validate(&r); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
}

// Finding 19 of the attack review: GC for network A (whose
// cni.dev/valid-attachments lists only A's attachments) tore down a pod
// attached through network B.
func TestGCTouchesOnlyItsNetwork(t *testing.T) {
	reqs := map[string]cniapi.Request{
		"a-kept":    {ContainerID: "c1", AttachIfName: "eth0", Network: "a"},
		"a-gone":    {ContainerID: "c2", AttachIfName: "eth0", Network: "a"},
		"b-same":    {ContainerID: "c1", AttachIfName: "net1", Network: "b"},
		"b-other":   {ContainerID: "c3", AttachIfName: "net1", Network: "b"},
		"a-no-name": {ContainerID: "c4", Network: "a"},
		"legacy":    {ContainerID: "c5", AttachIfName: "eth0"},
	}
	got := collect(reqs, "a", []cniapi.Attachment{{ContainerID: "c1", IfName: "eth0"}})
	if want := []string{"a-gone", "a-no-name"}; !slices.Equal(got, want) {
		t.Fatalf("GC of network a collects %v, want %v", got, want)
	}
	got = collect(reqs, "b", []cniapi.Attachment{{ContainerID: "c3", IfName: "net1"}})
	if want := []string{"b-same"}; !slices.Equal(got, want) {
		t.Fatalf("GC of network b collects %v, want %v", got, want)
	}
	if got := collect(reqs, "c", nil); len(got) != 0 {
		t.Fatalf("GC of a network with no attachments here collects %v", got)
	}
}
