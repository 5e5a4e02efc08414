package mesh

import (
	"encoding/hex"
	"encoding/json"

	"github.com/sealmesh/sealmesh/attest/simulated"
)

// LighthouseName is the manifest's lighthouse.
const LighthouseName = "lighthouse-1"

// Role is a manifest role for the pods of some namespaces.
type Role struct {
	Name       string
	Groups     []string
	Namespaces []string
}

// FirewallRule is a manifest firewall rule.
type FirewallRule struct {
	From  []string `json:"from"`
	To    string   `json:"to"`
	Proto string   `json:"proto"`
	Port  string   `json:"port"`
}

// Manifest is the demo's manifest: one pod role accepting the simulated TEE with
// the image "sealmesh-workload", a role "vm" for hosts admitted by join
// token, the coordinator role (what clients' coordinator policy also
// names), a lighthouse, and pods and VMs may reach each other. A join token
// whose secret hashes to lighthouseTokenHash (jointoken.Token.Hash) admits
// the lighthouse; "" leaves that to meshctl token create.
func Manifest(rootFingerprint, lighthouseTokenHash, ownerKey string, coordinator map[string]any, roles []Role, firewall []FirewallRule, lifetime string) ([]byte, error) {
	return manifest(rootFingerprint, lighthouseTokenHash, ownerKey, coordinator, roles, firewall, lifetime, LighthouseIP+":4242")
}

// ManifestFor is the demo's manifest with the lighthouse at underlay
// (host:port), for a mesh laid out elsewhere (make e2e-k8s).
func ManifestFor(rootFingerprint, ownerKey string, coordinator map[string]any, underlay string) ([]byte, error) {
	return manifest(rootFingerprint, "", ownerKey, coordinator, nil, nil, "", underlay)
}

func manifest(rootFingerprint, lighthouseTokenHash, ownerKey string, coordinator map[string]any, roles []Role, firewall []FirewallRule, lifetime, underlay string) ([]byte, error) {
	if lifetime == "" {
		lifetime = "1h"
	}
	meas := simulated.MeasurementOf("sealmesh-workload")
	attestation := map[string]any{"simulated": map[string]any{
		"measurements": []string{hex.EncodeToString(meas[:])}, "rootFingerprint": rootFingerprint,
	}}
	var rs []any
	for _, r := range roles {
		rs = append(rs, map[string]any{"name": r.Name, "groups": r.Groups, "podSelector": map[string]any{"namespaces": r.Namespaces}, "attestation": attestation})
	}
	rs = append(rs, map[string]any{"name": "pod", "groups": []string{"pods"}, "attestation": attestation},
		map[string]any{"name": "vm", "groups": []string{"vms"}, "joinToken": true})
	if firewall == nil {
		firewall = []FirewallRule{
			{From: []string{"pods", "vms"}, To: "pods", Proto: "any", Port: "any"},
			{From: []string{"pods", "vms"}, To: "vms", Proto: "any", Port: "any"},
		}
	}
	man := map[string]any{
		"version":             1,
		"owners":              []any{map[string]string{"name": "owner", "key": ownerKey}},
		"coordinators":        []any{map[string]any{"name": "coordinator", "attestation": coordinator}},
		"networks":            []string{Overlay, Overlay6},
		"certificateLifetime": lifetime,
		"roles":               rs,
		"lighthouses":         []any{map[string]any{"name": LighthouseName, "overlayIP": LighthouseVPN, "underlay": underlay}},
		"firewall":            firewall,
	}
	if lighthouseTokenHash != "" {
		man["joinTokens"] = []any{map[string]any{"role": "lighthouse", "name": LighthouseName, "sha256": lighthouseTokenHash}}
	}
	return json.MarshalIndent(man, "", "  ")
}
