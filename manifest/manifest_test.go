package manifest

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

const m96 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const fp64 = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

const fpC = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

const key32 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

const goodYAML = `
version: 1
owners:
  - {name: alice, key: "` + key32 + `"}
seedShareOwners:
  - {name: bob, key: "` + key32 + `"}
networks: [10.42.0.0/16, "fd42:42::/64"]
certificateLifetime: 1h
roles:
  - name: web
    groups: [web, pods]
    attestation:
      simulated:
        measurements: [` + m96 + `]
        rootFingerprint: ` + fp64 + `
        hostData: "` + fp64 + `"
        vmpl: 0
        minimumTCB: {bootloader: 3, tee: 0, snp: 8, microcode: 115}
    certificateLifetime: 30m
    podSelector: {namespaces: [prod], serviceAccounts: [web]}
  - name: api
    groups: [api]
    attestation:
      tdx: {mrtds: [` + m96 + `]}
      oidc: {issuer: "https://kubernetes.default.svc", audience: sealmesh, namespaces: [prod]}
  - name: vm
    groups: [vms]
    joinToken: true
coordinators:
  - name: coordinator-v1
    attestation:
      snp: {measurements: [` + m96 + `]}
lighthouses:
  - name: lh1
    overlayIP: 10.42.0.1
    underlay: 192.0.2.1:4242
joinTokens:
  - {role: lighthouse, name: lh1, sha256: ` + fp64 + `}
  - {role: vm, sha256: ` + fpC + `, uses: 1, expires: "2030-01-01T00:00:00Z"}
firewall:
  - {from: [pods], to: web, proto: icmp, port: any}
  - {from: [any], to: pods, proto: tcp, port: 8000-8080}
`

func TestParseGood(t *testing.T) {
	m, err := Parse([]byte(goodYAML))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := m.Prefix().String(); got != "10.42.0.0/16" {
		t.Errorf("Prefix = %s", got)
	}
	if got := fmt.Sprint(m.HostAddrs(netip.MustParseAddr("10.42.1.5"))); got != "[10.42.1.5/16 fd42:42::105/64]" {
		t.Errorf("HostAddrs(10.42.1.5) = %s", got)
	}
	if got := m.Lifetime().String(); got != "1h0m0s" {
		t.Errorf("Lifetime = %s", got)
	}
	web, _ := m.Role("web")
	if got := m.RoleLifetime(web).String(); got != "30m0s" {
		t.Errorf("RoleLifetime(web) = %s", got)
	}
	if !m.AcceptsSimulated() {
		t.Error("AcceptsSimulated = false, want true")
	}
	// The same manifest as JSON hashes the same.
	m2, err := Parse(m.Canonical())
	if err != nil {
		t.Fatalf("Parse(canonical): %v", err)
	}
	if m.Hash() != m2.Hash() {
		t.Errorf("hash changed across JSON round trip")
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name    string
		replace [2]string
		want    string
	}{
		{"short measurement", [2]string{"[" + m96 + "]", "[" + m96[1:] + "]"}, "roles[0].attestation.simulated.measurements[0]: want 96 lower-case hex characters, got 95"},
		{"unknown field", [2]string{"certificateLifetime: 1h", "certificateLifetim: 1h"}, `unknown field "certificateLifetim"`},
		// Issue 28: YAML names, the field meant, and what is wrong with a value.
		{"typo, suggested", [2]string{"certificateLifetime: 1h", "certificateLifetme: 1h"}, `manifest: unknown field "certificateLifetme" (did you mean "certificateLifetime"?)`},
		{"nested typo", [2]string{"rootFingerprint:", "rootFingerprnt:"}, `roles[0].attestation.simulated: unknown field "rootFingerprnt" (did you mean "rootFingerprint"?)`},
		{"upper-case hex", [2]string{"[" + m96 + "]", "[" + strings.ToUpper(m96) + "]"}, "roles[0].attestation.simulated.measurements[0]: want 96 lower-case hex characters, got upper-case hex: write it in lower case"},
		{"a list where a string goes", [2]string{"certificateLifetime: 1h", "certificateLifetime: [1h]"}, "certificateLifetime: want a string, got a list"},
		{"bad network", [2]string{"[10.42.0.0/16,", "[10.42.0.0,"}, "networks[0]: want a prefix"},
		{"two IPv4 networks", [2]string{`"fd42:42::/64"`, "10.43.0.0/16"}, "networks[1]: a second IPv4 network"},
		{"IPv6 smaller than IPv4", [2]string{`"fd42:42::/64"`, `"fd42:42::/120"`}, "networks[1]: has fewer addresses than networks[0]"},
		{"no networks", [2]string{`networks: [10.42.0.0/16, "fd42:42::/64"]`, "networks: []"}, "networks: required"},
		{"lighthouse outside network", [2]string{"overlayIP: 10.42.0.1", "overlayIP: 10.43.0.1"}, "lighthouses[0].overlayIP: 10.43.0.1 is not a host address"},
		{"lighthouse on network address", [2]string{"overlayIP: 10.42.0.1", "overlayIP: 10.42.0.0"}, "is not a host address"},
		{"no platform", [2]string{"simulated:", "other:"}, `unknown field "other"`},
		{"simulated without root", [2]string{"rootFingerprint: " + fp64 + "\n", "\n"}, "roles[0].attestation.simulated.rootFingerprint: required"},
		{"unknown group in rule", [2]string{"to: web", "to: db"}, `firewall[0].to: group "db" is given to no role`},
		{"bad port", [2]string{"8000-8080", "8080-8000"}, "firewall[1].port"},
		{"bad proto", [2]string{"proto: tcp", "proto: sctp"}, "firewall[1].proto"},
		{"bad role name", [2]string{"name: web", "name: Web_1"}, "roles[0].name: want a DNS label"},
		{"lifetime too short", [2]string{"certificateLifetime: 1h", "certificateLifetime: 1s"}, "certificateLifetime: want a duration"},
		{"role lifetime too long", [2]string{"certificateLifetime: 30m", "certificateLifetime: 9000h"}, "roles[0].certificateLifetime: want a duration"},
		{"short host data", [2]string{`hostData: "` + fp64 + `"`, `hostData: "abc"`}, "roles[0].attestation.simulated.hostData: want 64 lower-case hex characters, got 3"},
		{"vmpl out of range", [2]string{"vmpl: 0", "vmpl: 4"}, "roles[0].attestation.simulated.vmpl: want 0 to 3, got 4"},
		{"wrong version", [2]string{"version: 1", "version: 2"}, "version: want 1, got 2"},
		{"no owners: an immutable manifest", [2]string{"owners:\n  - {name: alice, key: \"" + key32 + "\"}", "owners: []"}, ""},
		{"short owner key", [2]string{"{name: alice, key: \"" + key32 + "\"}", "{name: alice, key: \"AAAA\"}"}, "owners[0].key: want the base64 of a 32-byte public key"},
		{"threshold above the seed-share owners", [2]string{"networks: [10.42", "seedShareThreshold: 2\nnetworks: [10.42"}, "seedShareThreshold: want 0 (each seed-share owner gets the whole seed) or 2 to the number of seed-share owners (1), got 2"},
		{"threshold of one", [2]string{"networks: [10.42", "seedShareThreshold: 1\nnetworks: [10.42"}, "seedShareThreshold: want 0"},
		{"one name in owners and seedShareOwners is fine", [2]string{"{name: bob,", "{name: alice,"}, ""},
		{"short mrtd", [2]string{"mrtds: [" + m96, "mrtds: [" + m96[2:]}, "roles[1].attestation.tdx.mrtds[0]: want 96"},
		{"oidc issuer not https", [2]string{"https://kubernetes.default.svc", "http://kubernetes.default.svc"}, "roles[1].attestation.oidc.issuer: want the cluster's https issuer URL"},
		{"token for no lighthouse", [2]string{"{role: lighthouse, name: lh1,", "{role: lighthouse, name: lh2,"}, `joinTokens[0].name: a lighthouse token names one of lighthouses[].name, got "lh2"`},
		{"token for an attested role", [2]string{"{role: vm,", "{role: web,"}, `joinTokens[1].role: role "web" is admitted by evidence`},
		{"token for no role", [2]string{"{role: vm,", "{role: vn,"}, `joinTokens[1].role: want "lighthouse" or a role with joinToken: true, got "vn"`},
		{"two tokens, one ID", [2]string{fpC, fp64}, "joinTokens[1].sha256: another token has ID bbbbbbbbbbbb"},
		{"short token hash", [2]string{fpC, "cc"}, "joinTokens[1].sha256: want 64 lower-case hex characters"},
		{"negative uses", [2]string{"uses: 1", "uses: -1"}, "joinTokens[1].uses: want 0"},
		{"token role with evidence", [2]string{"    joinToken: true\n", "    joinToken: true\n    attestation: {snp: {measurements: [" + m96 + "]}}\n"}, "roles[2].attestation: a joinToken role is admitted by token"},
		{"a role called lighthouse", [2]string{"  - name: vm\n", "  - name: lighthouse\n"}, `roles[2].name: "lighthouse" is the lighthouses' role`},
		{"coordinator by token", [2]string{"snp: {measurements: [" + m96 + "]}\nlighthouses", "oidc: {issuer: \"https://x\", audience: a}\nlighthouses"}, "coordinators[0].attestation.oidc: a coordinator must attest with a TEE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(goodYAML, tt.replace[0], tt.replace[1], 1)
			if in == goodYAML {
				t.Fatalf("replacement %q not found", tt.replace[0])
			}
			_, err := Parse([]byte(in))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Issue 28: meshctl manifest get gives YAML back: the same manifest (hash)
// when read again, fields in the canonical order, hex strings that look
// like numbers still strings.
func TestYAMLRoundTrip(t *testing.T) {
	digits := strings.Repeat("1", 96) // a number, if written unquoted
	m, err := Parse([]byte(strings.Replace(goodYAML, m96, `"`+digits+`"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	y, err := m.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(y), "version: 1\n") || strings.Contains(string(y), `{"`) || strings.Contains(string(y), `["`) {
		t.Errorf("not block YAML in canonical order:\n%s", y)
	}
	back, err := Parse(y)
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if !strings.Contains(string(y), digits) {
		t.Errorf("measurement missing:\n%s", y)
	}
	if back.Hash() != m.Hash() {
		t.Errorf("hash %s after the round trip, want %s:\n%s", back.Hash(), m.Hash(), y)
	}
}
