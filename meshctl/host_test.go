package meshctl

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/manifest"
)

// TestHostEnrolAndRenew: meshctl host enrol sends a stock-nebula public key
// with a vm token and writes the certificate, the CA and a config.yml whose
// key is the host's file; meshctl host renew, with that key and no token,
// brings the manifest's later firewall rules and revocations into
// config.yml, keeping the name and address.
func TestHostEnrolAndRenew(t *testing.T) {
	ctx := context.Background()
	o := newOwnerMesh(t)
	m, url, dir, keyFile, run, must := o.verifyMesh, o.url, o.dir, o.keyFile, o.run, o.must
	// The host's key, as nebula-cert keygen writes it.
	k, _ := ecdh.X25519().GenerateKey(rand.Reader)
	host := filepath.Join(dir, "etc-nebula")
	os.MkdirAll(host, 0o700)
	os.WriteFile(filepath.Join(host, "host.key"), cert.MarshalPrivateKeyToPEM(cert.Curve_CURVE25519, k.Bytes()), 0o600)
	os.WriteFile(filepath.Join(host, "host.pub"), cert.MarshalPublicKeyToPEM(cert.Curve_CURVE25519, k.PublicKey().Bytes()), 0o600)

	must("token", "create", "--role", "vm", "--owner-key", keyFile, "--out", filepath.Join(dir, "vm.token"))
	if _, err := run("host", "enrol", "--token-file", filepath.Join(dir, "vm.token"), "--pub-file", filepath.Join(host, "host.key"), "--out", host); err == nil {
		t.Fatal("a private key given as --pub-file was accepted")
	}
	t.Log(must("host", "enrol", "--token-file", filepath.Join(dir, "vm.token"), "--pub-file", filepath.Join(host, "host.pub"), "--out", host))
	first := readCert(t, host)
	cfg, err := readHostConfig(host)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PKI.Key != filepath.Join(host, "host.key") || cfg.PKI.Cert != filepath.Join(host, "host.crt") || len(cfg.Lighthouse.Hosts) != 1 || !slices.Equal(cfg.Relay.Relays, cfg.Lighthouse.Hosts) {
		t.Fatalf("config.yml: pki %+v, lighthouses %v, relays %v", cfg.PKI, cfg.Lighthouse.Hosts, cfg.Relay.Relays)
	}
	if !slices.Equal(first.PublicKey(), k.PublicKey().Bytes()) {
		t.Fatal("the certificate is not for the host's key")
	}

	// The owner opens a port to VMs and revokes another host.
	tok, err := lighthouseSecret.For(m.c.MeshID())
	if err != nil {
		t.Fatal(err)
	}
	lh, err := enrol.Join(ctx, api.NewClient(url), tok.String())
	if err != nil {
		t.Fatal(err)
	}
	other := fingerprintOf(t, lh.Certificate)
	if _, err := editManifest(ctx, api.NewClient(url), m.key, func(mf *manifest.Manifest, _ string) error {
		mf.Firewall = append(mf.Firewall, manifest.Rule{From: []string{"web"}, To: "vms", Proto: "tcp", Port: "22"})
		mf.Revoked = append(mf.Revoked, manifest.Revoked{Fingerprint: other, Name: "lh"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Log(must("host", "renew", "--dir", host))
	renewed := readCert(t, host)
	if renewed.Name() != first.Name() || renewed.Networks()[0] != first.Networks()[0] {
		t.Fatalf("renewal moved the host: %s %v, was %s %v", renewed.Name(), renewed.Networks(), first.Name(), first.Networks())
	}
	cfg, err = readHostConfig(host)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(cfg.Firewall.Inbound, func(r nebulaconfig.Rule) bool { return r.Port == "22" && r.Group == "web" }) {
		t.Errorf("the new rule is not in config.yml's inbound rules: %+v", cfg.Firewall.Inbound)
	}
	if !slices.Contains(cfg.PKI.Blocklist, other) {
		t.Errorf("the revoked certificate is not in config.yml's blocklist: %v", cfg.PKI.Blocklist)
	}
}

func readCert(t *testing.T, dir string) cert.Certificate {
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
