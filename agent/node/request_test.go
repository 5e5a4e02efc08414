package node

import (
	"slices"
	"testing"

	"github.com/sealmesh/sealmesh/agent/cniapi"
)

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
