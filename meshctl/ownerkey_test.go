package meshctl

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/internal/testenv"
	"github.com/sealmesh/sealmesh/manifest"
)

// TestOwnerKeyOffFile: an owner key held by a real ssh-agent (ssh-add of
// an OpenSSH Ed25519 key) signs a manifest update through --key
// ssh-agent:, the private key never read by meshctl; meshctl keygen
// --encrypt writes a key ssh-keygen reads with the passphrase (and not
// without), that meshctl uses with $SEALMESH_KEY_PASSPHRASE and refuses
// with a wrong one.
func TestOwnerKeyOffFile(t *testing.T) {
	agentBin := testenv.RequireTool(t, "ssh-agent")
	sshAdd := testenv.RequireTool(t, "ssh-add")
	sshKeygen := testenv.RequireTool(t, "ssh-keygen")
	o := newOwnerMesh(t)
	dir := t.TempDir()

	// A real ssh-agent on a socket of our own, stopped by its PID.
	sock := filepath.Join(dir, "agent.sock")
	agentCmd := exec.Command(agentBin, "-D", "-a", sock)
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentCmd.Process.Signal(syscall.SIGTERM); agentCmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal("ssh-agent made no socket")
		}
	}
	t.Setenv("SSH_AUTH_SOCK", sock)
	agentKey := filepath.Join(dir, "agent-owner")
	if out, err := exec.Command(sshKeygen, "-q", "-t", "ed25519", "-N", "", "-C", "alice@token", "-f", agentKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	if out, err := exec.Command(sshAdd, agentKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	agentPub := sshPublicKey(t, agentKey+".pub")
	os.Remove(agentKey) // only the agent has it now

	// The encrypted key file.
	t.Setenv("SEALMESH_KEY_PASSPHRASE", "correct horse")
	encFile := filepath.Join(dir, "owner.key")
	out := o.must("keygen", "--encrypt", "--out", encFile)
	encPub := field(out, "publicKey")
	if b, err := os.ReadFile(encFile); err != nil || !strings.Contains(string(b), "OPENSSH PRIVATE KEY") {
		t.Fatalf("keygen --encrypt wrote %.60q, %v", b, err)
	}
	if _, err := exec.Command(sshKeygen, "-y", "-P", "", "-f", encFile).CombinedOutput(); err == nil {
		t.Fatal("ssh-keygen read the encrypted key without its passphrase")
	}
	y, err := exec.Command(sshKeygen, "-y", "-P", "correct horse", "-f", encFile).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -y with the passphrase: %v", err)
	}
	if got := sshPublicKeyOf(t, y); got != encPub {
		t.Fatalf("ssh-keygen reads public key %s, keygen printed %s", got, encPub)
	}

	// The file owner hands the mesh to the agent's key and the encrypted key.
	if _, err := editManifest(context.Background(), api.NewClient(o.url), o.key, func(m *manifest.Manifest, _ string) error {
		m.Owners = []manifest.PublicKey{{Name: "on-agent", Key: agentPub}, {Name: "in-file", Key: encPub}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := o.run("token", "create", "--role", "vm", "--owner-key", "ssh-agent:nobody"); err == nil || !strings.Contains(err.Error(), "no Ed25519 key") {
		t.Fatalf("an agent key that is not there: %v", err)
	}
	t.Log(o.must("token", "create", "--role", "vm", "--owner-key", "ssh-agent:", "--out", filepath.Join(dir, "t1")))
	t.Log(o.must("token", "create", "--role", "vm", "--owner-key", "ssh-agent:alice@token", "--out", filepath.Join(dir, "t2")))
	t.Log(o.must("token", "create", "--role", "vm", "--owner-key", encFile, "--out", filepath.Join(dir, "t3")))
	h, err := api.NewClient(o.url).History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	signers := map[string]int{}
	for _, e := range h {
		signers[e.Signer]++
	}
	if signers["on-agent"] != 2 || signers["in-file"] != 1 {
		t.Fatalf("history signers %v, want on-agent twice and in-file once", signers)
	}
	t.Setenv("SEALMESH_KEY_PASSPHRASE", "wrong horse")
	if _, err := o.run("token", "create", "--role", "vm", "--owner-key", encFile); err == nil {
		t.Fatal("the encrypted key opened with a wrong passphrase")
	}
}

// sshPublicKey is the base64 raw Ed25519 key of an OpenSSH .pub file, as a
// manifest lists owners.
func sshPublicKey(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sshPublicKeyOf(t, b)
}

func sshPublicKeyOf(t *testing.T, authorized []byte) string {
	t.Helper()
	pk, _, _, _, err := ssh.ParseAuthorizedKey(authorized)
	if err != nil {
		t.Fatal(err)
	}
	raw := pk.(ssh.CryptoPublicKey).CryptoPublicKey()
	return base64.StdEncoding.EncodeToString(raw.(ed25519.PublicKey))
}

// field is the value of "key: value" in meshctl's output.
func field(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
