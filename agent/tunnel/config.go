// Package tunnel runs Nebula for one host: it renders Nebula's configuration from
// an enrolment, entirely in memory, and runs Nebula as a library.
//
// Each pod's Nebula runs in a process of its own, started from a thread that is
// inside the pod's network namespace, so every thread of it (Nebula starts
// goroutines for interface discovery, reloads and route watching) is in that
// namespace and nothing it does touches the node's. See DESIGN.md, "The data
// plane".
package tunnel

import (
	"encoding/json"
	"fmt"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/api"
)

// DefaultDevice is the name of the Nebula interface in a pod.
const DefaultDevice = "nebula1"

// DefaultPort is Nebula's UDP port.
const DefaultPort = 4242

// socketBuffer is the UDP socket's receive and send buffer size (Nebula sets
// it with SO_RCVBUFFORCE/SO_SNDBUFFORCE, past net.core.rmem_max, as root).
const socketBuffer = 10 << 20

// txQueue is the TUN interface's transmit queue, in packets: what the kernel
// may hand the tunnel before Nebula reads it. At Nebula's default (500) one
// TCP stream overflows it (TCP small queues let a flow have about 1 MiB,
// some 700 packets, queued below it), and the drops are retransmissions: 5%
// of the packets (docs/BENCHMARKS.md, data plane). 5000 holds several
// streams' worth. The queue holds packets only under load; its ring of
// pointers costs the kernel 40 KiB per pod.
const txQueue = 5000

// Options are the local choices the coordinator does not make.
type Options struct {
	Device     string // TUN device name; "" disables the TUN (a lighthouse may run without)
	MTU        int    // 0: Nebula's default (1300)
	ListenPort int    // 0: DefaultPort
	Lighthouse bool   // serve as lighthouse and relay
	LogLevel   string // Nebula's logging.level; "" means info
}

// Config renders Nebula's configuration as JSON (which Nebula's YAML loader reads).
// The private key is inlined: it goes to Nebula through memory, never a file.
// Without a private key (a renewal or a manifest change sent to a running
// tunnel, see Update) the key is left empty and the tunnel keeps its own.
// Never pass the result to nebula.Main with configTest set: that path logs the
// whole configuration, key included.
func Config(e *api.EnrolResponse, privateKey []byte, o Options) ([]byte, error) {
	if o.ListenPort == 0 {
		o.ListenPort = DefaultPort
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	staticHosts := map[string][]string{}
	var lighthouses []string
	for _, l := range e.Lighthouses {
		staticHosts[l.OverlayIP] = append(staticHosts[l.OverlayIP], l.Underlay)
		lighthouses = append(lighthouses, l.OverlayIP)
	}
	inbound := []map[string]any{}
	for _, r := range e.Inbound {
		rule := map[string]any{"proto": r.Proto, "port": r.Port}
		if r.Group == "" {
			rule["host"] = "any"
		} else {
			rule["group"] = r.Group
		}
		inbound = append(inbound, rule)
	}
	key := ""
	if privateKey != nil {
		key = string(cert.MarshalPrivateKeyToPEM(cert.Curve_CURVE25519, privateKey))
	}
	blocklist := e.Blocklist
	if blocklist == nil {
		blocklist = []string{}
	}
	tun := map[string]any{"disabled": o.Device == ""}
	if o.Device != "" {
		tun["dev"] = o.Device
		tun["tx_queue"] = txQueue
		if o.MTU > 0 {
			tun["mtu"] = o.MTU
		}
	}
	lh := map[string]any{"am_lighthouse": o.Lighthouse, "interval": 10}
	relay := map[string]any{"am_relay": o.Lighthouse, "use_relays": !o.Lighthouse}
	if o.Lighthouse {
		// A lighthouse serves the others and needs no list of its own.
		staticHosts = map[string][]string{}
	} else {
		lh["hosts"] = lighthouses
		relay["relays"] = lighthouses
	}
	c := map[string]any{
		"pki": map[string]any{
			"ca":   e.CA,
			"cert": e.Certificate,
			"key":  key,
			// Revoked certificates: refused, and (disconnect_invalid) the
			// tunnels that carry them closed, as are expired ones.
			"blocklist":          blocklist,
			"disconnect_invalid": true,
		},
		"static_host_map": staticHosts,
		"lighthouse":      lh,
		"relay":           relay,
		// Socket buffers sized for bursts: at the kernel's default (208 KiB)
		// the receiving socket overflows under one TCP stream and the
		// losses cap throughput (docs/BENCHMARKS.md, data plane). They
		// are limits, not allocations: an idle pod costs nothing more.
		"listen": map[string]any{"host": "0.0.0.0", "port": o.ListenPort,
			"read_buffer": socketBuffer, "write_buffer": socketBuffer},
		"punchy":  map[string]any{"punch": true},
		"tun":     tun,
		"logging": map[string]any{"level": o.LogLevel, "format": "json"},
		"firewall": map[string]any{
			"outbound": []map[string]any{{"port": "any", "proto": "any", "host": "any"}},
			"inbound":  inbound,
		},
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("tunnel: config: %w", err)
	}
	return b, nil
}
