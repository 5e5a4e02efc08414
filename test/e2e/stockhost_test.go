package e2e

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/test/mesh"
	"github.com/sealmesh/sealmesh/test/netlab"
	"github.com/sealmesh/sealmesh/test/tools"
)

// TestStockNebulaHost: a VM that runs stock nebula v1.11.1 (built from its
// module) and has no sealmesh agent joins with a join token: nebula-cert
// keygen makes its key where it runs, meshctl host enrol sends the public
// key and writes host.crt, ca.crt and config.yml, and nebula runs them as
// they are. It reaches a CNI pod over Nebula and the pod reaches it; meshctl
// host renew and a SIGHUP renew its certificate under a TCP stream that
// stays up; meshctl revoke cuts it off.
func TestStockNebulaHost(t *testing.T) {
	m := up(t)
	ctx := t.Context()
	pod, err := m.AddPod(ctx, "pod-a")
	if err != nil {
		t.Fatal(err)
	}

	// The VM: a namespace routed through the node, like the lighthouse.
	vm := routedVM(t, m)
	h := joinVM(t, m, vm, "vm")
	dir, first, vmIP, nebula := h.dir, h.cert, h.ip, h.cmd
	if g := first.Groups(); !strings.Contains(strings.Join(g, ","), "joined-by-token") {
		t.Fatalf("the VM's certificate has groups %v, want joined-by-token among them", g)
	}
	reach(t, "the VM reaches the pod", vm, pod.OverlayIP)
	reach(t, "the pod reaches the VM", pod.NS, vmIP)

	// Renewal under a stream: new files, nebula reloads them.
	st := openStream(t, pod.NS, pod.OverlayIP, vm)
	st.keep(t, 2*time.Second)
	out, err := m.Meshctl("host", "renew", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(out))
	renewed := hostCert(t, dir)
	if fp(t, renewed) == fp(t, first) || renewed.Networks()[0].Addr() != vmIP || renewed.Name() != first.Name() {
		t.Fatalf("renewal gave %s %s (first %s %s): want a new certificate, same name and address", renewed.Name(), renewed.Networks(), first.Name(), first.Networks())
	}
	if err := syscall.Kill(nebula.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	st.keep(t, 5*time.Second)
	if log := m.Tail("vm-nebula.log"); !strings.Contains(log, fp(t, renewed)) {
		t.Errorf("nebula did not load the renewed certificate %s:\n%s", fp(t, renewed), log)
	}

	// Revoked: the pod's tunnel to it closes, and renewal is refused.
	if out, err = m.Meshctl("revoke", vmIP.String(), "--owner-key", m.OwnerKey()); err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(out))
	cut := false
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && !cut; {
		r, _ := pod.NS.Ping(vmIP, 2, time.Second)
		cut = r.Received == 0
	}
	if !cut {
		t.Fatal("the pod still reaches the revoked VM 60 s after meshctl revoke")
	}
	if r, _ := vm.Ping(pod.OverlayIP, 3, 3*time.Second); r.Received != 0 {
		t.Errorf("the revoked VM reaches the pod: %v", r)
	}
	if _, err := m.Meshctl("host", "renew", "--dir", dir); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("the revoked VM's renewal: %v, want refused as revoked", err)
	}
}

// routedVM is a namespace for a VM on 10.99.2.2, routed through the node
// like the lighthouse.
func routedVM(t *testing.T, m *mesh.Mesh) *netlab.NS {
	t.Helper()
	vm, err := m.Lab.NS("vm")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlab.Veth(m.Node, "smv0", "10.99.2.1/24", vm, "eth0", "10.99.2.2/24"); err != nil {
		t.Fatal(err)
	}
	if err := vm.DefaultRoute("10.99.2.1"); err != nil {
		t.Fatal(err)
	}
	return vm
}

// vmHost is a host running stock nebula, joined by token.
type vmHost struct {
	ns   *netlab.NS
	dir  string
	cert cert.Certificate
	ip   netip.Addr
	cmd  *exec.Cmd
	log  string
}

// joinVM makes a key in ns with stock nebula-cert, a single-use token for
// role vm, enrols the public key with meshctl host enrol and starts stock
// nebula in ns on the files it wrote.
func joinVM(t *testing.T, m *mesh.Mesh, ns *netlab.NS, name string) *vmHost {
	t.Helper()
	dir := filepath.Join(m.Dir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tools.Bin(t, "nebula-cert"), "keygen", "-out-key", filepath.Join(dir, "host.key"), "-out-pub", filepath.Join(dir, "host.pub")).CombinedOutput(); err != nil {
		t.Fatalf("nebula-cert keygen: %v\n%s", err, out)
	}
	if _, err := m.Meshctl("token", "create", "--role", "vm", "--uses", "1", "--owner-key", m.OwnerKey(), "--out", filepath.Join(dir, "vm.token")); err != nil {
		t.Fatal(err)
	}
	out, err := m.Meshctl("host", "enrol", "--token-file", filepath.Join(dir, "vm.token"), "--pub-file", filepath.Join(dir, "host.pub"), "--out", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(out))
	h := &vmHost{ns: ns, dir: dir, cert: hostCert(t, dir), log: name + "-nebula.log"}
	h.ip = h.cert.Networks()[0].Addr()
	h.start(t, m)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- %s\n%s", h.log, m.Tail(h.log))
		}
	})
	return h
}

// start runs stock nebula on the host's files.
func (h *vmHost) start(t *testing.T, m *mesh.Mesh) {
	t.Helper()
	cmd, err := m.Lab.Start(h.ns, m.Path(h.log), m.Bin("nebula"), "-config", filepath.Join(h.dir, "config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	h.cmd = cmd
}

// reach waits (up to 30 s: the first packet waits for a handshake through
// the lighthouse) until from pings to.
func reach(t *testing.T, what string, from *netlab.NS, to netip.Addr) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if r, _ := from.Ping(to, 2, 2*time.Second); r.Received > 0 {
			return
		}
	}
	t.Fatalf("%s (%s): no answer within 30 s", what, to)
}

func hostCert(t *testing.T, dir string) cert.Certificate {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "host.crt"))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := cert.UnmarshalCertificateFromPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fp(t *testing.T, c cert.Certificate) string {
	t.Helper()
	f, err := c.Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	return f
}
