package tunnel_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/sealmesh/sealmesh/test/tools"
)

// sealmesh-tunnel runs once per pod, and every package it links costs each pod
// its initialised globals (Go has no way to share them between processes): it
// links Nebula and nothing of the attestation libraries, client-go or
// memberlist (with the agent re-executed instead, each pod paid 13.4 MB of
// private memory; with this binary 9.3 MB, docs/BENCHMARKS.md).
func TestTunnelDependencies(t *testing.T) {
	tools.ForbidDeps(t, "github.com/sealmesh/sealmesh/cmd/sealmesh-tunnel",
		"github.com/google/go-sev-guest", "github.com/google/go-tdx-guest", "k8s.io/", "github.com/coreos/go-oidc",
		"github.com/hashicorp/memberlist", "github.com/sealmesh/sealmesh/attest", "github.com/sealmesh/sealmesh/agent/enrol",
		"go.etcd.io/",
	)
}

// Nebula takes five protocol numbers from gopacket's layers package, whose
// init fills tables for every EtherType and PPP type: 7 MB of globals
// written at start in each tunnel process (most of its start, and memory
// its pods share) and scanned by every collection. go.mod replaces the
// module with sealmesh's own stand-in (third_party/gopacket): the tunnel
// must link that one, with the RFCs' numbers.
func TestPacketTablesNotLinked(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Dir}}", "github.com/sealmesh/sealmesh/cmd/sealmesh-tunnel").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var dir string
	for _, line := range strings.Split(string(out), "\n") {
		if p, d, _ := strings.Cut(line, " "); p == "github.com/google/gopacket/layers" {
			dir = d
		}
	}
	if want := filepath.Join("third_party", "gopacket", "layers"); !strings.HasSuffix(dir, string(filepath.Separator)+want) {
		t.Errorf("sealmesh-tunnel links gopacket/layers from %q, want sealmesh's stand-in in %s", dir, want)
	}
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"IPProtocolTCP", int(layers.IPProtocolTCP), 6},
		{"IPProtocolUDP", int(layers.IPProtocolUDP), 17},
		{"IPProtocolICMPv6", int(layers.IPProtocolICMPv6), 58},
		{"ICMPv6TypeEchoRequest", layers.ICMPv6TypeEchoRequest, 128},
		{"ICMPv6TypeEchoReply", layers.ICMPv6TypeEchoReply, 129},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}
