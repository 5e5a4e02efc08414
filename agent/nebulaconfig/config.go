// Package nebulaconfig is Nebula's configuration as sealmesh writes it:
// typed, made from an enrolment (Config), rendered to the YAML Nebula reads.
// It links no more of Nebula than its certificates, so that meshctl (which
// writes config.yml for stock nebula hosts) does not link Nebula itself.
package nebulaconfig

import (
	"encoding/json"
	"fmt"
	"net/netip"

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

// TxQueue is the TUN interface's transmit queue, in packets: what the kernel
// may hand the tunnel before Nebula reads it. At Nebula's default (500) one
// TCP stream overflows it (TCP small queues let a flow have about 1 MiB,
// some 700 packets, queued below it), and the drops are retransmissions: 5%
// of the packets (docs/BENCHMARKS.md, data plane). 5000 holds several
// streams' worth. The queue holds packets only under load; its ring of
// pointers costs the kernel 40 KiB per pod.
const TxQueue = 5000

// Options are the local choices the coordinator does not make.
type Options struct {
	Device     string // TUN device name; "" disables the TUN (a lighthouse may run without)
	MTU        int    // 0: Nebula's default (1300)
	ListenPort int    // 0: DefaultPort
	ListenHost string // "": every address (0.0.0.0)
	Lighthouse bool   // serve as lighthouse and relay
	LogLevel   string // Nebula's logging.level; "" means info
	// DNS, for a lighthouse, is the host:port its DNS server answers on:
	// the certificate names of the hosts it knows, as A and AAAA records.
	// "" serves none.
	DNS string
}

// Nebula is the part of Nebula's configuration sealmesh sets, rendered to
// the JSON that Nebula's YAML loader reads (JSON): one struct, so that a
// misspelt key is a compile error, read the same way by the agent that makes
// it and the tunnel host that runs it.
type Nebula struct {
	PKI           PKI                 `json:"pki"`
	StaticHostMap map[string][]string `json:"static_host_map"`
	Lighthouse    Lighthouse          `json:"lighthouse"`
	Relay         Relay               `json:"relay"`
	Listen        Listen              `json:"listen"`
	Punchy        Punchy              `json:"punchy"`
	Tun           Tun                 `json:"tun"`
	Logging       Logging             `json:"logging"`
	Firewall      Firewall            `json:"firewall"`
}

// PKI is the host's certificate, key and trust.
type PKI struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	// Key is the private key (PEM); empty in an update, where the running
	// tunnel keeps its own.
	Key string `json:"key"`
	// Blocklist holds revoked certificates' fingerprints: refused, and
	// (DisconnectInvalid) the tunnels that carry them closed, as are
	// expired ones.
	Blocklist         []string `json:"blocklist"`
	DisconnectInvalid bool     `json:"disconnect_invalid"`
}

// Lighthouse is Nebula's lighthouse section.
type Lighthouse struct {
	AmLighthouse bool     `json:"am_lighthouse"`
	Interval     int      `json:"interval"`
	Hosts        []string `json:"hosts,omitempty"`
	// AdvertiseAddrs and LocalAllowList are set by the tunnel host, which
	// reads the pod's addresses inside its namespace (host.netnsSafe).
	AdvertiseAddrs []string   `json:"advertise_addrs,omitempty"`
	LocalAllowList *AllowList `json:"local_allow_list,omitempty"`
	// ServeDNS and DNS make a lighthouse answer DNS for host names.
	ServeDNS bool `json:"serve_dns,omitempty"`
	DNS      *DNS `json:"dns,omitempty"`
}

// DNS is where a lighthouse's DNS server listens.
type DNS struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// AllowList allows (true) or denies interfaces by name pattern.
type AllowList struct {
	Interfaces map[string]bool `json:"interfaces"`
}

// Relay is Nebula's relay section.
type Relay struct {
	AmRelay   bool     `json:"am_relay"`
	UseRelays bool     `json:"use_relays"`
	Relays    []string `json:"relays,omitempty"`
}

// Listen is the UDP socket.
type Listen struct {
	Host        string `json:"host"`
	Port        int    `json:"port"`
	ReadBuffer  int    `json:"read_buffer"`
	WriteBuffer int    `json:"write_buffer"`
}

// Punchy keeps NAT mappings open.
type Punchy struct {
	Punch bool `json:"punch"`
}

// Tun is the overlay interface.
type Tun struct {
	Disabled bool   `json:"disabled"`
	Dev      string `json:"dev,omitempty"`
	TxQueue  int    `json:"tx_queue,omitempty"`
	MTU      int    `json:"mtu,omitempty"`
}

// Logging is Nebula's log level and format.
type Logging struct {
	Level  string `json:"level"`
	Format string `json:"format"`
}

// Firewall holds the inbound and outbound rules.
type Firewall struct {
	Outbound []Rule `json:"outbound"`
	Inbound  []Rule `json:"inbound"`
}

// Rule is one firewall rule: from a group, or from any host.
type Rule struct {
	Port  string `json:"port"`
	Proto string `json:"proto"`
	Host  string `json:"host,omitempty"`
	Group string `json:"group,omitempty"`
}

// Render is the configuration as Nebula loads it.
func (n *Nebula) Render() ([]byte, error) {
	b, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("tunnel: config: %w", err)
	}
	return b, nil
}

// Config makes Nebula's configuration from an enrolment. The private key is
// inlined: it goes to Nebula through memory, never a file. Without a private
// key (a renewal or a manifest change sent to a running tunnel, see
// UpdateInstance) the key is left empty and the tunnel keeps its own. Never
// pass the rendering to nebula.Main with configTest set: that path logs the
// whole configuration, key included.
func Config(e *api.EnrolResponse, privateKey []byte, o Options) *Nebula {
	if o.ListenHost == "" {
		o.ListenHost = "0.0.0.0"
	}
	if o.ListenPort == 0 {
		o.ListenPort = DefaultPort
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	n := &Nebula{
		PKI:           PKI{CA: e.CA, Cert: e.Certificate, Blocklist: e.Blocklist, DisconnectInvalid: true},
		StaticHostMap: map[string][]string{},
		Lighthouse:    Lighthouse{AmLighthouse: o.Lighthouse, Interval: 10},
		Relay:         Relay{AmRelay: o.Lighthouse, UseRelays: !o.Lighthouse},
		// Socket buffers sized for bursts: at the kernel's default (208 KiB)
		// the receiving socket overflows under one TCP stream and the
		// losses cap throughput (docs/BENCHMARKS.md, data plane). They
		// are limits, not allocations: an idle pod costs nothing more.
		Listen:  Listen{Host: o.ListenHost, Port: o.ListenPort, ReadBuffer: socketBuffer, WriteBuffer: socketBuffer},
		Punchy:  Punchy{Punch: true},
		Tun:     Tun{Disabled: o.Device == ""},
		Logging: Logging{Level: o.LogLevel, Format: "json"},
		Firewall: Firewall{
			Outbound: []Rule{{Port: "any", Proto: "any", Host: "any"}},
			Inbound:  []Rule{},
		},
	}
	if privateKey != nil {
		n.PKI.Key = string(cert.MarshalPrivateKeyToPEM(cert.Curve_CURVE25519, privateKey))
	}
	if n.PKI.Blocklist == nil {
		n.PKI.Blocklist = []string{}
	}
	if o.Device != "" {
		n.Tun.Dev, n.Tun.TxQueue = o.Device, TxQueue
		if o.MTU > 0 {
			n.Tun.MTU = o.MTU
		}
	}
	if o.Lighthouse && o.DNS != "" {
		// Checked by the lighthouse's flags; a bad one leaves DNS off.
		if ap, err := netip.ParseAddrPort(o.DNS); err == nil {
			n.Lighthouse.ServeDNS = true
			n.Lighthouse.DNS = &DNS{Host: ap.Addr().String(), Port: int(ap.Port())}
		}
	}
	// A lighthouse serves the others and needs no list of its own.
	if !o.Lighthouse {
		for _, l := range e.Lighthouses {
			n.StaticHostMap[l.OverlayIP] = append(n.StaticHostMap[l.OverlayIP], l.Underlay)
			n.Lighthouse.Hosts = append(n.Lighthouse.Hosts, l.OverlayIP)
		}
		n.Relay.Relays = n.Lighthouse.Hosts
	}
	for _, r := range e.Inbound {
		rule := Rule{Proto: r.Proto, Port: r.Port, Group: r.Group}
		if r.Group == "" {
			rule.Host = "any"
		}
		n.Firewall.Inbound = append(n.Firewall.Inbound, rule)
	}
	return n
}

// Parse reads a configuration sent to a tunnel host.
func Parse(b []byte) (*Nebula, error) {
	var n Nebula
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("tunnel: config: %w", err)
	}
	return &n, nil
}
