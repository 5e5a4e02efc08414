package cniapi

import (
	"regexp"
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

// Issue 29: the checks were regular expressions, compiled when the
// package initialised, at every exec of sealmesh-cni. The loops that
// replaced them take exactly what the patterns and length limits took:
// every string of up to five bytes over an alphabet with a byte of each
// kind the patterns tell apart.
func TestChecksAgreeWithPatterns(t *testing.T) {
	checks := []struct {
		name    string
		check   func(string) bool
		pattern string
		max     int
	}{
		{"validID", validID, `^[A-Za-z0-9][A-Za-z0-9_.\-]*$`, 255},
		{"validIf", func(s string) bool { return validIf(s) || s == "." || s == ".." }, `^[A-Za-z0-9_.\-]+$`, 15},
		{"dnsLabel", dnsLabel, `^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`, 63},
		{"dnsSubdomain", dnsSubdomain, `^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`, 253},
		{"podUID", podUID, `^[0-9a-fA-F-]+$`, 64},
	}
	alphabet := []byte("aqZF09-._ /\n\xff")
	var all []string
	var grow func(prefix []byte)
	grow = func(prefix []byte) {
		all = append(all, string(prefix))
		if len(prefix) == 5 {
			return
		}
		for _, c := range alphabet {
			grow(append(prefix, c))
		}
	}
	grow(nil)
	for _, c := range checks {
		re := regexp.MustCompile(c.pattern)
		for _, n := range []int{c.max, c.max + 1} { // the length limit
			all = append(all, strings.Repeat("a", n), strings.Repeat("a.", n/2)+"a")
		}
		for _, s := range all {
			if got, want := c.check(s), len(s) <= c.max && re.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v, the pattern and the limit say %v", c.name, s, got, want)
			}
		}
	}
	if validIf(".") || validIf("..") {
		t.Error(`validIf takes "." or ".."`)
	}
}
