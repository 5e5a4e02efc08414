package node

import (
	"context"
	"io"

	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
	"github.com/sealmesh/sealmesh/agent/tunnel"
)

// The agent's pod lifecycle reaches the node through these: tunnel processes
// and network namespaces need root, so tests run the lifecycle against fakes
// of them (and against a real coordinator, which needs nothing).

// Tunnels runs the pods' Nebula instances. Production: sealmesh-tunnel
// processes, several pods each (Processes).
type Tunnels interface {
	// Start runs instance id for a pod and returns the host (process) it
	// runs in and how long the start's parts took there; on failure
	// nothing is left running.
	Start(ctx context.Context, id string, req *tunnel.AddRequest) (host string, took tunnel.Started, err error)
	// Stop ends instance id on host; a host left empty stops.
	Stop(host, id string)
	// Drop gives back the room of an instance that stopped by itself.
	Drop(host string)
	// Alive reports whether host runs.
	Alive(host string) bool
	// Instances lists the instances host runs; an error means it did not
	// answer (busy), which is not taken for dead.
	Instances(ctx context.Context, host string) ([]tunnel.InstanceInfo, error)
	// Hosts lists the hosts running, for metrics.
	Hosts() []string
	// Metrics is Nebula's metrics of host, Prometheus text format.
	Metrics(ctx context.Context, host string) (io.ReadCloser, error)
	// Update hands instance id a new configuration (Nebula reloads it).
	Update(ctx context.Context, host, id string, cfg *nebulaconfig.Nebula) error
	// Prove proves possession of instance id's key, which never leaves it.
	Prove(ctx context.Context, host, id string, req *tunnel.ProveRequest) ([]byte, error)
	// Adopt takes up the hosts a previous agent left, with what each runs.
	Adopt(ctx context.Context) map[string]map[string]bool
	// Keep counts an adopted instance on host as a pod's.
	Keep(host string)
	// Settle, after adoption, stops the instances claimed does not name
	// ("host/id") and hosts left with no pod.
	Settle(ctx context.Context, claimed map[string]bool)
}

// Netns answers what the agent asks of pods' network namespaces.
// Production: netlink in the namespace (LinuxNetns).
type Netns interface {
	// MTU is the MTU of the default route's link in netns.
	MTU(netns string) (int, error)
	// HasAddress reports whether ifName in netns carries addr (a prefix).
	HasAddress(netns, ifName, addr string) error
	// Exists reports whether netns is still there.
	Exists(netns string) bool
}
