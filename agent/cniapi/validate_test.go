package cniapi

import (
	"regexp"
	"regexp/syntax"
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
		{"container ID too long", func(r *Request) { r.ContainerID = strings.Repeat("c", 256) }, "containerID"},
		{"interface name . ", func(r *Request) { r.IfName = ".." }, "ifName"},
		{"namespace ending in -", func(r *Request) { r.PodNamespace = "shop-" }, "podNamespace"},
		{"UID too long", func(r *Request) { r.PodUID = strings.Repeat("a", 65) }, "podUID"},
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
		func(r *Request) { // every length at its bound
			r.ContainerID, r.IfName, r.PodNamespace, r.PodUID = strings.Repeat("c", 255), strings.Repeat("n", 15), strings.Repeat("a", 63), strings.Repeat("a", 64)
		},
		func(r *Request) { r.PodNamespace, r.PodName, r.PodUID = "", "", "" }, // not Kubernetes
	} {
		r := good
		ok(&r)
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
}

// Issue 29: counted repetitions ({0,254}) compile to that many copies of
// their pattern, and sealmesh-cni compiled them at every exec (360 KB and
// 1-2 ms of its start). The patterns stay small; lengths are checked apart.
func TestPatternsStaySmall(t *testing.T) {
	for _, re := range []*regexp.Regexp{idRE, ifRE, dnsLabelRE, dnsSubdomainRE, uidRE} {
		parsed, err := syntax.Parse(re.String(), syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		prog, err := syntax.Compile(parsed.Simplify())
		if err != nil {
			t.Fatal(err)
		}
		if n := len(prog.Inst); n > 64 {
			t.Errorf("%s compiles to %d instructions, want at most 64", re, n)
		}
	}
}
