package mesh

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/sealmesh/sealmesh/attest/simulated"
)

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
// the image "sealmesh-workload", the coordinator role (what clients' coordinator
// policy also names), a lighthouse, and pods may reach each other.
func Manifest(rootFingerprint, lighthouseToken, ownerKey string, coordinator map[string]any, roles []Role, firewall []FirewallRule, lifetime string) ([]byte, error) {
	return manifest(rootFingerprint, lighthouseToken, ownerKey, coordinator, roles, firewall, lifetime, LighthouseIP+":4242")
}

// ManifestFor is the demo's manifest with the lighthouse at underlay
// (host:port), for a mesh laid out elsewhere (make e2e-k8s).
func ManifestFor(rootFingerprint, lighthouseToken, ownerKey string, coordinator map[string]any, underlay string) ([]byte, error) {
	return manifest(rootFingerprint, lighthouseToken, ownerKey, coordinator, nil, nil, "", underlay)
}

func manifest(rootFingerprint, lighthouseToken, ownerKey string, coordinator map[string]any, roles []Role, firewall []FirewallRule, lifetime, underlay string) ([]byte, error) {
	if lifetime == "" {
		lifetime = "1h"
	}
	meas := simulated.MeasurementOf("sealmesh-workload")
	tok := sha256.Sum256([]byte(lighthouseToken))
	attestation := map[string]any{"simulated": map[string]any{
		"measurements": []string{hex.EncodeToString(meas[:])}, "rootFingerprint": rootFingerprint,
	}}
	var rs []any
	for _, r := range roles {
		rs = append(rs, map[string]any{"name": r.Name, "groups": r.Groups, "podSelector": map[string]any{"namespaces": r.Namespaces}, "attestation": attestation})
	}
	rs = append(rs, map[string]any{"name": "pod", "groups": []string{"pods"}, "attestation": attestation})
	if firewall == nil {
		firewall = []FirewallRule{{From: []string{"pods"}, To: "pods", Proto: "any", Port: "any"}}
	}
	man := map[string]any{
		"version":             1,
		"owners":              []any{map[string]string{"name": "owner", "key": ownerKey}},
		"coordinators":        []any{map[string]any{"name": "coordinator", "attestation": coordinator}},
		"networks":            []string{Overlay, Overlay6},
		"certificateLifetime": lifetime,
		"roles":               rs,
		"lighthouses": []any{map[string]any{
			"name": "lighthouse-1", "overlayIP": LighthouseVPN, "underlay": underlay,
			"tokenSHA256": hex.EncodeToString(tok[:]),
		}},
		"firewall": firewall,
	}
	return json.MarshalIndent(man, "", "  ")
}
