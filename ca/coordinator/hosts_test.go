package coordinator_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/ca/cluster"
	"github.com/sealmesh/sealmesh/ca/owner"
)

// TestHostListIsForOwnersAndCoordinators is finding 10: GET /v1/status
// listed every host (names, overlay IPs, fingerprints, holders, pods) to any
// client. Now anyone gets the count; the list goes to an owner (an owner
// proof) or a coordinator that attested as a coordinator role.
func TestHostListIsForOwnersAndCoordinators(t *testing.T) {
	ctx := context.Background()
	p := setupPeers(t)
	anyServer := attest.Accept{Platforms: []string{attest.PlatformSimulated}, Claims: func(*attest.Claims) error { return nil }}
	anon := cluster.AttestedDial(p.aURL, anyServer, nil)
	if _, err := enrol.Workload(ctx, anon, webDev, api.Workload{Namespace: "ns", Name: "secret-pod"}); err != nil {
		t.Fatal(err)
	}

	st, err := anon.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Hosts) != 0 || !st.HostsWithheld || st.HostCount != 1 || st.State != api.StateReady {
		t.Fatalf("anonymous status: %d hosts listed, withheld %v, count %d, state %s; want the count only", len(st.Hosts), st.HostsWithheld, st.HostCount, st.State)
	}

	stranger, _, _, _ := owner.NewOwnerKey()
	for _, c := range []struct {
		name   string
		client *api.Client
		proof  *api.OwnerProof
		want   string // "" lists the host
	}{
		{"anonymous", anon, nil, "owner proof: none given"},
		{"not an owner", anon, api.ProveOwner(stranger, api.PurposeHosts, time.Now()), "not an owner"},
		{"proof for another purpose", anon, api.ProveOwner(ownerKey, api.PurposeSeedShares, time.Now()), "made for"},
		{"a workload that attested", cluster.AttestedDial(p.aURL, anyServer, webDev), nil, "not a coordinator"},
		{"an owner", anon, api.ProveOwner(ownerKey, api.PurposeHosts, time.Now()), ""},
		{"an attested coordinator", cluster.AttestedDial(p.aURL, anyServer, p.coordDev), nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, err := c.client.Hosts(ctx, c.proof, "ns/secret-pod")
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %+v, %v; want a refusal containing %q", st, err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Hosts) != 1 || st.Hosts[0].Workload != "ns/secret-pod" || st.HostsWithheld {
				t.Fatalf("hosts: %+v (withheld %v)", st.Hosts, st.HostsWithheld)
			}
		})
	}
}
