package e2e

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sealmesh/sealmesh/test/mesh"
	"github.com/sealmesh/sealmesh/test/netlab"
)

// TestLighthouseAnswersPodNames: a pod's certificate is named
// <pod>.<namespace>, and the lighthouse (--dns) answers that name with the
// pod's overlay IP once the pod has reported to it; after the pod is
// deleted and made again (a new IP), the same name answers the new IP.
func TestLighthouseAnswersPodNames(t *testing.T) {
	m := up(t)
	ctx := t.Context()
	pod, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	resolves(t, m.Node, "pod-a.demo.", pod.OverlayIP)
	if err := m.RemovePod(ctx, pod); err != nil {
		t.Fatal(err)
	}
	// Another pod first, so the name's next pod gets another address.
	if _, err := m.AddPod(ctx, "pod-b"); err != nil {
		t.Fatal(err)
	}
	again, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	if again.OverlayIP == pod.OverlayIP {
		t.Fatalf("the new pod-a got the old address %s", pod.OverlayIP)
	}
	resolves(t, m.Node, "pod-a.demo.", again.OverlayIP)
}

// resolves waits (up to 30 s) until the lighthouse answers name with want.
func resolves(t *testing.T, from *netlab.NS, name string, want netip.Addr) {
	t.Helper()
	var got []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		got = nil
		var in *dns.Msg
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		if err := from.Do(func() (err error) {
			in, err = dns.Exchange(q, net.JoinHostPort(mesh.LighthouseIP, "53"))
			return err
		}); err != nil {
			continue
		}
		for _, rr := range in.Answer {
			if a, ok := rr.(*dns.A); ok {
				got = append(got, a.A.String())
				if a.A.String() == want.String() {
					return
				}
			}
		}
	}
	t.Fatalf("the lighthouse answers %s with %v, want %s", name, got, want)
}
