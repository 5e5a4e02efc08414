package fuzz

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/google/go-tdx-guest/testing/testdata"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/attest/simulated"
	"github.com/sealmesh/sealmesh/ca/kbs"
	"github.com/sealmesh/sealmesh/ca/seal"
	"github.com/sealmesh/sealmesh/ca/shamir"
	"github.com/sealmesh/sealmesh/cni"
	"github.com/sealmesh/sealmesh/jointoken"
	"github.com/sealmesh/sealmesh/manifest"
	"github.com/sealmesh/sealmesh/meshctl"
)

// panicked reports whether a verifier's error is a recovered panic: the
// verifiers recover into errors, which must never be needed.
func panicked(err error) bool {
	return err != nil && strings.Contains(err.Error(), "made the verifier fail")
}

// workloadManifest is a valid manifest with a simulated role and owner.
func workloadManifest(ownerPub ed25519.PublicKey, sharePub []byte, dev *simulated.Device) string {
	m := dev.Measurement
	return fmt.Sprintf(`{"version": 1, "networks": ["10.42.0.0/24"], "certificateLifetime": "1h",
 "owners": [{"name": "alice", "key": %q}],
 "seedShareOwners": [{"name": "bob", "key": %q}],
 "roles": [{"name": "web", "groups": ["web"], "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}}],
 "lighthouses": [{"name": "lh", "overlayIP": "10.42.0.1", "underlay": "192.0.2.1:4242"}], "joinTokens": [{"role": "lighthouse", "name": "lh", "sha256": %q}]}`,
		base64.StdEncoding.EncodeToString(ownerPub), base64.StdEncoding.EncodeToString(sharePub),
		fmt.Sprintf("%x", m[:]), dev.RootFingerprint(), strings.Repeat("0", 64))
}

func device(f *testing.F, name string) *simulated.Device {
	d, err := simulated.New(simulated.MeasurementOf(name))
	if err != nil {
		f.Fatal(err)
	}
	return d
}

func FuzzManifest(f *testing.F) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	f.Add([]byte(workloadManifest(pub, sk.PublicKey().Bytes(), device(f, "web"))))
	f.Add([]byte("version: 1\nnetworks: [10.42.0.0/16]\nroles: []\n"))
	f.Add([]byte(`{"version": 1, "networks": ["fd42::/64", "10.42.0.0/16"]}`))
	f.Add([]byte(`{}`))
	// Unknown fields and wrong types: the errors walk the document.
	f.Add([]byte("version: 1\ncertificateLifetme: 1h\nroles: [{name: web, attestation: {simulated: {measurment: []}}}]\n"))
	f.Add([]byte(`{"version": "one", "networks": [1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := manifest.Parse(b)
		if err != nil {
			return
		}
		// What parses is valid: everything a coordinator reads of it works.
		_ = m.Hash()
		_ = m.Prefix()
		_ = m.Lifetime()
		_ = m.Blocklist()
		_ = m.AcceptsSimulated()
		js, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("a parsed manifest does not marshal: %v", err)
		}
		again, err := manifest.ParseJSON(js)
		if err != nil {
			t.Fatalf("a parsed manifest does not parse again from its JSON: %v\n%s", err, js)
		}
		if again.Hash() != m.Hash() {
			t.Fatalf("hash changed through JSON: %s, %s", m.Hash(), again.Hash())
		}
		// meshctl manifest get's YAML reads back to the same manifest.
		y, err := m.YAML()
		if err != nil {
			t.Fatalf("a parsed manifest has no YAML: %v", err)
		}
		if back, err := manifest.Parse(y); err != nil || back.Hash() != m.Hash() {
			t.Fatalf("YAML does not read back to the same manifest: %v\n%s", err, y)
		}
	})
}

// fuzzEvidence fuzzes one platform's verification: no input may make a
// verifier panic (finding 1 of the attack review: a TDX quote with three
// bytes changed crashed every attested-TLS client).
func fuzzEvidence(f *testing.F, platform string, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := attest.Verify(attest.Evidence{Platform: platform, Data: b}, [64]byte{})
		if panicked(err) {
			t.Fatal(err)
		}
	})
}

func FuzzEvidenceTDX(f *testing.F) {
	crasher := append([]byte(nil), testdata.RawQuote...)
	copy(crasher[0x278:], []byte{16, 0, 0, 0}) // the attack review's crasher
	fuzzEvidence(f, attest.PlatformTDX, testdata.RawQuote, crasher, testdata.RawQuote[:0x30])
}

func FuzzEvidenceSNP(f *testing.F) {
	d := device(f, "web")
	ev, err := d.Evidence([64]byte{})
	if err != nil {
		f.Fatal(err)
	}
	// A simulated report is an SNP report with its own chain.
	fuzzEvidence(f, attest.PlatformSNP, ev.Data)
}

func FuzzEvidenceSimulated(f *testing.F) {
	d := device(f, "web")
	ev, err := d.Evidence([64]byte{})
	if err != nil {
		f.Fatal(err)
	}
	fuzzEvidence(f, attest.PlatformSimulated, ev.Data, ev.Data[:len(ev.Data)/2])
}

// FuzzSealed opens fuzzed sealed state and seed shares: no panic, and
// nothing but what was sealed opens.
func FuzzSealed(f *testing.F) {
	kek, _, err := seal.NewUnlockKey()
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := seal.Seal([]byte("payload"), kek)
	if err != nil {
		f.Fatal(err)
	}
	sk, _ := ecdh.X25519().GenerateKey(rand.Reader)
	share, err := seal.SealTo(sk.PublicKey().Bytes(), seal.SeedShareInfo, []byte("seed"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed, "SMUK1-")
	f.Add(share, "")
	f.Fuzz(func(t *testing.T, b []byte, unlock string) {
		if pt, err := seal.Open(b, kek); err == nil && !bytes.Equal(b, sealed) {
			t.Fatalf("sealed state that was never sealed opened to %q", pt)
		}
		if pt, err := seal.OpenWith(sk, seal.SeedShareInfo, b); err == nil && !bytes.Equal(b, share) {
			t.Fatalf("a share that was never made opened to %q", pt)
		}
		seal.ParseUnlockKey(unlock)
		seal.KEKOf(b)
	})
}

// FuzzCNIConfig runs the plugin's commands on fuzzed configuration (with
// prevResult), against an agent that is not there.
func FuzzCNIConfig(f *testing.F) {
	socket := filepath.Join(f.TempDir(), "absent.sock")
	f.Add([]byte(`{"cniVersion": "1.1.0", "name": "pods", "type": "sealmesh-cni", "agentSocket": "` + socket + `", "prevResult": {"cniVersion": "1.1.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}], "ips": [{"address": "10.244.0.5/24", "interface": 0}]}}`))
	f.Add([]byte(`{"cniVersion": "0.4.0", "name": "pods", "type": "sealmesh-cni", "agentSocket": "` + socket + `", "prevResult": {"cniVersion": "0.4.0", "interfaces": [{"name": "eth0"}], "ips": [{"version": "4", "address": "10.244.0.5/24", "interface": 7}]}}`))
	f.Fuzz(func(t *testing.T, conf []byte) {
		var c map[string]any
		if json.Unmarshal(conf, &c) == nil {
			// Never reach an agent that may run on this machine.
			c["agentSocket"] = socket
			conf, _ = json.Marshal(c)
		}
		args := &skel.CmdArgs{ContainerID: "c1", Netns: "/run/netns/x", IfName: "eth0", Args: "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p", StdinData: conf}
		for _, cmd := range []func(*skel.CmdArgs) error{cni.Add, cni.Del, cni.Check, cni.GC, cni.Status} {
			cmd(args)
		}
	})
}

// FuzzAgentRequest decodes fuzzed agent requests as the agent's socket
// does and validates them: what validates is safe to use as a path part.
func FuzzAgentRequest(f *testing.F) {
	f.Add([]byte(`{"containerID": "c0ffee", "netns": "/var/run/netns/x", "ifName": "nebula1", "attachIfName": "eth0", "mtu": 1400, "podNamespace": "shop", "podName": "web-0", "podUID": "0b6c2c5e", "network": "pods"}`))
	f.Add([]byte(`{"containerID": "../x", "ifName": "a/b"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r cniapi.Request
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if dec.Decode(&r) != nil || r.Validate() != nil {
			return
		}
		for _, s := range []string{r.ContainerID, r.IfName, r.AttachIfName, r.PodNamespace, r.PodName} {
			if strings.ContainsAny(s, "/\x00\n") || s == ".." {
				t.Fatalf("validated request carries %q", s)
			}
		}
	})
}

// FuzzChanges: meshctl's structural diff of two manifests (one of them a
// coordinator's answer) refuses what is not JSON and never panics; a
// document compared with itself has no change.
func FuzzChanges(f *testing.F) {
	f.Add([]byte(`{"roles":[{"name":"web","groups":["web"]}],"revoked":[{"fingerprint":"ab"}]}`), []byte(`{"roles":[]}`))
	f.Add([]byte(`[1,{"name":"x"},[{}]]`), []byte(`null`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		meshctl.Changes(a, b)
		if same, err := meshctl.Changes(a, a); err == nil && len(same) != 0 {
			t.Fatalf("%q against itself: %v", a, same)
		}
	})
}

// FuzzJoinToken: a join token from whoever presents one parses or is
// refused, never panics, and a refusal never repeats it (logs and answers
// carry the error).
func FuzzJoinToken(f *testing.F) {
	tok, _ := jointoken.New(strings.Repeat("ab", 32))
	f.Add(tok.String())
	f.Add("SMTKN-1-" + strings.Repeat("ab", 32) + "-")
	f.Add("SMTKN-1--")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := jointoken.Parse(s)
		if err != nil {
			if len(s) > 16 && strings.Contains(err.Error(), s) {
				t.Fatalf("the refusal repeats the token: %v", err)
			}
			return
		}
		again, err := jointoken.Parse(got.String())
		if err != nil || again != got {
			t.Fatalf("%q does not round-trip: %v", s, err)
		}
	})
}

// FuzzKBSRuntimeData: the KBS runtime data a guest sends is hashed in its
// canonical form: anything either fails or canonicalises to a fixed point.
func FuzzKBSRuntimeData(f *testing.F) {
	f.Add([]byte(`{"tee-pubkey": {"y": "b", "x": "a", "kty": "EC"}, "nonce": "n"}`))
	f.Add([]byte(`[1.50, "\u003c", {"b": null, "a": true}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := kbs.Canonical(b)
		if err != nil {
			return
		}
		again, err := kbs.Canonical(c)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("canonical form %q is not a fixed point: %q, %v", c, again, err)
		}
	})
}

// FuzzSeedShare: a seed share a recovering coordinator receives (after
// HPKE, so from a seed-share owner, or a corrupted file) is checked or
// refused, never panics, and is never accepted unless it is one of the
// sharing's.
func FuzzSeedShare(f *testing.F) {
	shares, pub, err := shamir.Split(bytes.Repeat([]byte{7}, 32), 2, 3)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range shares {
		f.Add(s)
	}
	f.Add([]byte("SMSHARE1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := shamir.Check(b, pub); err == nil && !slices.ContainsFunc(shares, func(s []byte) bool { return bytes.Equal(s, b) }) {
			t.Fatalf("a share not of the sharing was accepted: %x", b)
		}
		shamir.Join([][]byte{shares[0], b}, pub)
	})
}
