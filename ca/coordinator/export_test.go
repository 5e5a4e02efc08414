package coordinator

import (
	"context"

	"github.com/sealmesh/sealmesh/ca/api"
)

// SetMaxStatusHosts lowers the status's host list bound for a test.
func SetMaxStatusHosts(n int) func() {
	old := maxStatusHosts
	maxStatusHosts = n
	return func() { maxStatusHosts = old }
}

// MaxRedeemed is the bound on nonces remembered as used.
const MaxRedeemed = maxRedeemed

// Vouched is m as a coordinator holding c's seed would announce it.
func (c *Coordinator) Vouched(m api.Member) api.Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	m.Vouch = vouch(*c.seed, m)
	return m
}

// TryPeers is one recovery attempt, as Run makes on a gossip change.
func (c *Coordinator) TryPeers(ctx context.Context) { c.tryPeers(ctx) }
