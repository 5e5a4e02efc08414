package coordinator

import (
	"context"

	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/ca/cluster"
	"github.com/sealmesh/sealmesh/ca/enrol"
)

// SetMaxStatusHosts lowers the status's host list bound for a test.
func SetMaxStatusHosts(n int) func() {
	old := maxStatusHosts
	maxStatusHosts = n
	return func() { maxStatusHosts = old }
}

// Vouched is m as a coordinator holding c's seed would announce it.
func (c *Coordinator) Vouched(m api.Member) api.Member {
	m.Vouch = cluster.Vouch(*c.view().seed, m)
	return m
}

// TryPeers is one recovery attempt, as Run makes on a gossip change.
func (c *Coordinator) TryPeers(ctx context.Context) { c.tryPeers(ctx) }

// StatusOf is the status listing only the hosts host names.
func (c *Coordinator) StatusOf(host string) *api.Status { return c.status(c.view(), host) }

// MaxRedeemed is the bound on nonces remembered as used.
const MaxRedeemed = enrol.MaxRedeemed

// ConfirmFromPeers is one freshness check, as Run makes every 5 s.
func (c *Coordinator) ConfirmFromPeers(ctx context.Context) { c.confirmFresh(ctx) }
