package owner

import (
	"crypto"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"
)

// AgentPrefix names an owner key held by an ssh-agent ($SSH_AUTH_SOCK):
// "ssh-agent:" alone is the agent's only Ed25519 key; "ssh-agent:X" is the
// one whose comment or SHA256 fingerprint (ssh-add -l) is X.
const AgentPrefix = "ssh-agent:"

// PassphraseEnv holds the passphrase of an encrypted owner key file, for
// scripts; without it meshctl asks on the terminal.
const PassphraseEnv = "SEALMESH_KEY_PASSPHRASE"

// LoadOwnerSigner reads an owner key from spec: an ssh-agent's key
// (AgentPrefix), or a key file meshctl keygen wrote, encrypted (--encrypt,
// OpenSSH format, so ssh-add loads it too) or not. The private half of an
// agent's key never enters this process.
func LoadOwnerSigner(spec string) (crypto.Signer, error) {
	if sel, ok := strings.CutPrefix(spec, AgentPrefix); ok {
		return agentKey(sel)
	}
	b, err := os.ReadFile(spec)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "OPENSSH PRIVATE KEY" {
		return LoadOwnerKey(spec)
	}
	k, err := ssh.ParseRawPrivateKey(b)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		var pass []byte
		if pass, err = Passphrase(fmt.Sprintf("passphrase for %s: ", spec), false); err != nil {
			return nil, err
		}
		k, err = ssh.ParseRawPrivateKeyWithPassphrase(b, pass)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	switch k := k.(type) {
	case *ed25519.PrivateKey:
		return *k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%s: not an owner (Ed25519) key but %T", spec, k)
}

// EncryptOwnerKey is key in OpenSSH's format, encrypted with passphrase
// (bcrypt KDF, AES-256-CTR): what meshctl keygen --encrypt writes, and what
// ssh-add and ssh-keygen read.
func EncryptOwnerKey(key ed25519.PrivateKey, passphrase []byte) ([]byte, error) {
	blk, err := ssh.MarshalPrivateKeyWithPassphrase(key, "sealmesh owner key", passphrase)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(blk), nil
}

// Passphrase is $SEALMESH_KEY_PASSPHRASE, or what the user types on the
// terminal after prompt (twice when confirm is set).
func Passphrase(prompt string, confirm bool) ([]byte, error) {
	if p, ok := os.LookupEnv(PassphraseEnv); ok {
		return []byte(p), nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("a passphrase is needed: set $%s or run on a terminal", PassphraseEnv)
	}
	defer tty.Close()
	read := func(prompt string) ([]byte, error) {
		fmt.Fprint(tty, prompt)
		defer fmt.Fprintln(tty)
		return term.ReadPassword(int(tty.Fd()))
	}
	p, err := read(prompt)
	if err != nil {
		return nil, err
	}
	if confirm {
		again, err := read("again: ")
		if err != nil {
			return nil, err
		}
		if string(again) != string(p) {
			return nil, errors.New("the passphrases differ")
		}
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	return p, nil
}

// agentSigner signs with a key an ssh-agent holds.
type agentSigner struct {
	agent agent.ExtendedAgent
	key   ssh.PublicKey
	pub   ed25519.PublicKey
}

func agentKey(sel string) (crypto.Signer, error) {
	sock := os.Getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, errors.New("ssh-agent: $SSH_AUTH_SOCK is not set")
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("ssh-agent: %w", err)
	}
	// The connection lives as long as this process (meshctl): the signer
	// uses it for every signature.
	a := agent.NewClient(conn)
	keys, err := a.List()
	if err != nil {
		return nil, fmt.Errorf("ssh-agent: list keys: %w", err)
	}
	var found []*agent.Key
	for _, k := range keys {
		if k.Type() != ssh.KeyAlgoED25519 {
			continue
		}
		if sel == "" || sel == k.Comment || sel == ssh.FingerprintSHA256(k) {
			found = append(found, k)
		}
	}
	switch {
	case len(found) == 0 && sel == "":
		return nil, errors.New("ssh-agent: it holds no Ed25519 key (ssh-add one; owner keys are Ed25519)")
	case len(found) == 0:
		return nil, fmt.Errorf("ssh-agent: no Ed25519 key with comment or fingerprint %q (ssh-add -l lists them)", sel)
	case len(found) > 1:
		return nil, fmt.Errorf("ssh-agent: %d Ed25519 keys; name one: %s<comment or SHA256 fingerprint>", len(found), AgentPrefix)
	}
	pk, err := ssh.ParsePublicKey(found[0].Marshal())
	if err != nil {
		return nil, err
	}
	cpk, ok := pk.(ssh.CryptoPublicKey)
	if !ok {
		return nil, errors.New("ssh-agent: the key has no public key")
	}
	pub, ok := cpk.CryptoPublicKey().(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("ssh-agent: not an Ed25519 key")
	}
	return &agentSigner{agent: a, key: pk, pub: pub}, nil
}

// Public is the key's Ed25519 public key.
func (s *agentSigner) Public() crypto.PublicKey { return s.pub }

// Sign asks the agent to sign msg (pure Ed25519, as ssh-ed25519 signs).
func (s *agentSigner) Sign(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	sig, err := s.agent.Sign(s.key, msg)
	if err != nil {
		return nil, fmt.Errorf("ssh-agent: sign: %w", err)
	}
	if sig.Format != ssh.KeyAlgoED25519 || len(sig.Blob) != ed25519.SignatureSize {
		return nil, fmt.Errorf("ssh-agent: a %s signature, want ssh-ed25519", sig.Format)
	}
	return sig.Blob, nil
}
