package cniapi

import (
	"strings"
	"testing"
)

// Finding 15 of the attack review: the agent accepted any MTU and
// unvalidated pod names from its socket.
func TestValidateRequest(t *testing.T) {
	good := Request{ContainerID: "c0ffee", Netns: "/var/run/netns/x", IfName: "nebula1", AttachIfName: "eth0",
		PodNamespace: "shop", PodName: "web-0.canary", PodUID: "0b6c2c5e-4f0e-4d5a-9d8b-1f2e3d4c5b6a", MTU: 1400, Network: "k8s-pod-network"}
	if err := good.Validate(); err != nil {
		t.Fatalf("a good request: %v", err)
	}
	for _, tc := range []struct {
		name string
		set  func(*Request)
		want string
	}{
		{"container ID with a slash", func(r *Request) { r.ContainerID = "../etc" }, "containerID"},
		{"interface name too long", func(r *Request) { r.IfName = strings.Repeat("n", 16) }, "ifName"},
		{"attach name with a space", func(r *Request) { r.AttachIfName = "eth 0" }, "attachIfName"},
		{"MTU negative", func(r *Request) { r.MTU = -1 }, "mtu"},
		{"MTU too small", func(r *Request) { r.MTU = 68 }, "mtu"},
		{"MTU too large", func(r *Request) { r.MTU = 1 << 20 }, "mtu"},
		{"namespace upper case", func(r *Request) { r.PodNamespace = "Shop" }, "podNamespace"},
		{"namespace too long", func(r *Request) { r.PodNamespace = strings.Repeat("a", 64) }, "podNamespace"},
		{"pod name with a newline", func(r *Request) { r.PodName = "web\nlevel=ERROR" }, "podName"},
		{"pod name with a slash", func(r *Request) { r.PodName = "prod/db-0" }, "podName"},
		{"pod name too long", func(r *Request) { r.PodName = strings.Repeat("a", 254) }, "podName"},
		{"UID with quotes", func(r *Request) { r.PodUID = `"x"` }, "podUID"},
		{"network name too long", func(r *Request) { r.Network = strings.Repeat("n", 256) }, "network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.set(&r)
			if err := r.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want an error naming %s", err, tc.want)
			}
		})
	}
	for _, ok := range []func(*Request){
		func(r *Request) { r.MTU = 0 },
		func(r *Request) { r.PodNamespace, r.PodName, r.PodUID = "", "", "" }, // not Kubernetes
	} {
		r := good
		ok(&r)
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
}
