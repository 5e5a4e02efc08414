package coordinator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
)

// In node mode one node's evidence speaks for all its pods: the pod it names
// picks the role through the roles' podSelector, first match wins.
func TestPodSelectorPicksTheRole(t *testing.T) {
	h := newHarness(t, newDirs(t), nil)
	admin := fmt.Sprintf(`{"name": "admin", "groups": ["admin"], "podSelector": {"namespaces": ["ops"], "serviceAccounts": ["root"]}, "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}},
    {"name": "shop", "groups": ["shop"], "podSelector": {"namespaces": ["shop"]}, "attestation": {"simulated": {"measurements": [%q], "rootFingerprint": %q}}},
    `, measurement("web"), webDev.RootFingerprint(), measurement("web"), webDev.RootFingerprint())
	h.create(t, strings.Replace(testManifest(webDev.RootFingerprint()), `"roles": [
    `, `"roles": [
    `+admin, 1))

	tests := []struct {
		workload api.Workload
		role     string
	}{
		{api.Workload{Namespace: "ops", Name: "a", ServiceAccount: "root"}, "admin"},
		{api.Workload{Namespace: "ops", Name: "b", ServiceAccount: "default"}, "web"}, // not admin's service account
		{api.Workload{Namespace: "shop", Name: "c"}, "shop"},
		{api.Workload{Namespace: "other", Name: "d"}, "web"}, // web selects every pod
	}
	for _, tt := range tests {
		t.Run(tt.workload.Namespace+"/"+tt.workload.Name, func(t *testing.T) {
			e, err := enrol.Workload(context.Background(), h.client, webDev, tt.workload)
			if err != nil {
				t.Fatal(err)
			}
			if e.Role != tt.role {
				t.Fatalf("role %s, want %s", e.Role, tt.role)
			}
		})
	}
}
