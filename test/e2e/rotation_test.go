package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/test/mesh"
)

// TestCARotation: pods keep a TCP stream across both steps of meshctl
// rotate ca, renewing onto the new CA while trusting both; after --finish
// a stock-nebula host still holding a certificate from the old CA is
// refused by every host; an agent restarted after the switch attaches new
// pods under the new CA.
func TestCARotation(t *testing.T) {
	m := up(t)
	ctx := t.Context()
	a, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.AddPod(ctx, "pod-b")
	if err != nil {
		t.Fatal(err)
	}
	vmNS := routedVM(t, m)
	vm := joinVM(t, m, vmNS, "vm")
	reach(t, "the VM reaches pod-a", vm.ns, a.OverlayIP)

	caOf := func() string {
		st, err := m.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.CAFingerprint
	}
	ca1 := caOf()
	st := openStream(t, b.NS, b.OverlayIP, a.NS)
	st.keep(t, 2*time.Second)

	// Step one: both pods renew onto the new CA, the stream stays up.
	out, err := m.Meshctl("rotate", "ca", "--owner-key", m.OwnerKey())
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(out))
	ca2 := caOf()
	if ca2 == ca1 {
		t.Fatal("rotate ca kept the CA")
	}
	keepUntil(t, st, "both pods renewed under the new CA", func() bool {
		return podIssuer(t, m, a) == ca2 && podIssuer(t, m, b) == ca2
	})
	reach(t, "pod-a reaches the VM (old CA, still trusted)", a.NS, vm.ip)

	// Step two: the old CA is trusted no more.
	if out, err = m.Meshctl("rotate", "ca", "--finish", "--owner-key", m.OwnerKey()); err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(out))
	stat, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keepUntil(t, st, "both pods renewed onto the finished rotation", func() bool {
		return podHead(t, m, a) == stat.Head && podHead(t, m, b) == stat.Head
	})
	st.keep(t, 3*time.Second)
	cut := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !cut; {
		r, _ := a.NS.Ping(vm.ip, 2, time.Second)
		cut = r.Received == 0
	}
	if !cut {
		t.Fatal("pod-a still reaches the VM whose certificate is from the old CA, 60 s after --finish")
	}
	if r, _ := vm.ns.Ping(b.OverlayIP, 3, 3*time.Second); r.Received != 0 {
		t.Errorf("the VM with an old-CA certificate reaches pod-b: %v", r)
	}

	// An agent started after the switch attaches under the new CA.
	m.KillAgent()
	if err := m.RestartAgent(ctx, "agent-2.log"); err != nil {
		t.Fatal(err)
	}
	c, err := m.AddPod(ctx, "pod-c")
	if err != nil {
		t.Fatal(err)
	}
	if got := podIssuer(t, m, c); got != ca2 {
		t.Fatalf("a pod attached after the switch has a certificate under %s, want %s", got, ca2)
	}
	reach(t, "pod-c reaches pod-a", c.NS, a.OverlayIP)
}

// keepUntil keeps the stream busy until ok, for up to a minute.
func keepUntil(t *testing.T, st *stream, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		st.keep(t, 500*time.Millisecond)
	}
}

func podRecord(t *testing.T, m *mesh.Mesh, p *mesh.Pod) map[string]any {
	t.Helper()
	rec, err := m.AgentRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// podIssuer is the CA fingerprint of the pod's current certificate, as its
// agent keeps it.
func podIssuer(t *testing.T, m *mesh.Mesh, p *mesh.Pod) string {
	t.Helper()
	pemCert, _ := podRecord(t, m, p)["certificate"].(string)
	c, _, err := cert.UnmarshalCertificateFromPEM([]byte(pemCert))
	if err != nil {
		return ""
	}
	return c.Issuer()
}

func podHead(t *testing.T, m *mesh.Mesh, p *mesh.Pod) string {
	t.Helper()
	h, _ := podRecord(t, m, p)["head"].(string)
	return h
}
