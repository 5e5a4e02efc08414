// Package cluster is the coordinators' membership: a hashicorp/memberlist
// cluster in which each coordinator announces its API address, state and latest
// generation. Gossip is neither authenticated nor trusted: it only tells a
// coordinator where its peers are and when to look again. Every claim that
// matters is then checked over attested TLS or against the signed store.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/sealmesh/sealmesh/api"
)

// Config configures one member.
type Config struct {
	// Name is unique in the cluster (default: the host name).
	Name string
	// Bind is the gossip address, host:port (UDP and TCP).
	Bind string
	// Advertise is the address others reach this member's gossip at, when it
	// is not Bind's (default: Bind's, or a private address of this host).
	Advertise string
	// Join lists host:port of other members; a DNS name stands for all of its
	// addresses (a headless Service), looked up again at every join.
	Join []string
	// Resolver looks the names up (net.DefaultResolver if nil).
	Resolver *net.Resolver
	// Local returns what this member announces (Name and Health are set here).
	Local func() api.Member
	// OnChange is called (never concurrently, never blocking gossip) when
	// another member joins, leaves, or announces something new.
	OnChange func()
	Log      *slog.Logger
}

// Cluster is this coordinator's membership.
type Cluster struct {
	cfg     Config
	ml      *memberlist.Memberlist
	mu      sync.Mutex
	meta    []byte
	changed chan struct{}
	// others is kept from memberlist's events: the nodes its Members returns
	// are written by its goroutines, so reading them later would race.
	others map[string]api.Member
}

// metaLimit is memberlist's bound on a node's metadata.
const metaLimit = memberlist.MetaMaxSize

// Start joins (or forms) the cluster and keeps this member's announcement
// current until ctx ends; then it leaves.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("cluster: name: %w", err)
		}
		cfg.Name = h
	}
	c := &Cluster{cfg: cfg, changed: make(chan struct{}, 1), others: map[string]api.Member{}}
	c.meta = c.encode()

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	host, port, err := splitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: --gossip-addr %q: %w", cfg.Bind, err)
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if cfg.Advertise != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitHostPort(cfg.Advertise); err != nil {
			return nil, fmt.Errorf("cluster: --gossip-advertise %q: %w", cfg.Advertise, err)
		}
	}
	mc.Delegate = delegate{c}
	mc.Events = events{c}
	mc.Logger = log.New(&logWriter{cfg.Log}, "", 0)
	if c.ml, err = memberlist.Create(mc); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	go c.run(ctx)
	return c, nil
}

func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	if h == "" {
		h = "0.0.0.0"
	}
	port, err := strconv.Atoi(p)
	return h, port, err
}

// run re-announces this member when its state changes, (re)joins the listed
// members while alone or periodically (a healed partition, a member that
// restarted), calls OnChange, and leaves when ctx ends.
func (c *Cluster) run(ctx context.Context) {
	announce := time.NewTicker(500 * time.Millisecond)
	defer announce.Stop()
	var lastJoin time.Time
	for {
		if len(c.cfg.Join) > 0 {
			alone := c.ml.NumMembers() <= 1
			if (alone && time.Since(lastJoin) > 2*time.Second) || time.Since(lastJoin) > 30*time.Second {
				lastJoin = time.Now()
				if n, err := c.ml.Join(c.addrs(ctx)); err != nil && n == 0 {
					c.cfg.Log.Debug("gossip join", "members", c.cfg.Join, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			c.ml.Leave(2 * time.Second)
			c.ml.Shutdown()
			return
		case <-c.changed:
			if c.cfg.OnChange != nil {
				c.cfg.OnChange()
			}
		case <-announce.C:
			meta := c.encode()
			c.mu.Lock()
			same := string(meta) == string(c.meta)
			c.meta = meta
			c.mu.Unlock()
			if !same {
				if err := c.ml.UpdateNode(time.Second); err != nil {
					c.cfg.Log.Debug("gossip announce", "err", err)
				}
			}
		}
	}
}

// addrs resolves the join list to addresses: a name stands for all of its
// addresses, this member's own included (memberlist skips it).
func (c *Cluster) addrs(ctx context.Context) []string {
	r := c.cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	var out []string
	for _, j := range c.cfg.Join {
		host, port, err := net.SplitHostPort(j)
		if err != nil || net.ParseIP(host) != nil {
			out = append(out, j)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ips, err := r.LookupHost(lctx, host)
		cancel()
		if err != nil {
			c.cfg.Log.Debug("gossip join: lookup", "name", host, "err", err)
			continue
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	return out
}

func (c *Cluster) encode() []byte {
	var m api.Member
	if c.cfg.Local != nil {
		m = c.cfg.Local()
	}
	m.Name, m.Health, m.Self = "", "", false
	b, _ := json.Marshal(m)
	if len(b) > metaLimit {
		// An API URL long enough to hit this is a configuration error; the
		// head is the part to drop.
		m.Head = ""
		b, _ = json.Marshal(m)
	}
	return b
}

// Members returns every member the cluster knows alive or suspect, this one
// first.
func (c *Cluster) Members() []api.Member {
	c.mu.Lock()
	out := make([]api.Member, 0, len(c.others)+1)
	for _, m := range c.others {
		out = append(out, m)
	}
	self := c.meta
	c.mu.Unlock()
	var m api.Member
	if json.Unmarshal(self, &m) == nil {
		m.Name, m.Health, m.Self = c.cfg.Name, "alive", true
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b api.Member) int {
		if a.Self != b.Self {
			if a.Self {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// seen records a node as an event shows it (memberlist holds its lock while
// calling, so the node is read safely here).
func (c *Cluster) seen(n *memberlist.Node, gone bool) {
	if n.Name == c.cfg.Name {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var m api.Member
	if gone || json.Unmarshal(n.Meta, &m) != nil {
		delete(c.others, n.Name) // gone, or not a sealmesh coordinator
	} else {
		m.Name, m.Health = n.Name, "alive"
		if n.State == memberlist.StateSuspect {
			m.Health = "suspect"
		}
		c.others[n.Name] = m
	}
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Name is this member's name.
func (c *Cluster) Name() string { return c.cfg.Name }

type delegate struct{ c *Cluster }

func (d delegate) NodeMeta(limit int) []byte {
	d.c.mu.Lock()
	defer d.c.mu.Unlock()
	if len(d.c.meta) > limit {
		return nil
	}
	return slices.Clone(d.c.meta)
}

// Gossip carries no messages and no state of its own: only node metadata.
func (delegate) NotifyMsg([]byte)                       {}
func (delegate) GetBroadcasts(int, int) [][]byte        { return nil }
func (delegate) LocalState(bool) []byte                 { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool) {}

type events struct{ c *Cluster }

func (e events) NotifyJoin(n *memberlist.Node)   { e.c.seen(n, false) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.c.seen(n, true) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.c.seen(n, false) }

// logWriter sends memberlist's log lines to slog at debug level, except
// its warnings and errors.
type logWriter struct{ log *slog.Logger }

func (w *logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(line, "[ERR]"):
		w.log.Error("gossip", "msg", line)
	case strings.Contains(line, "[WARN]"):
		w.log.Warn("gossip", "msg", line)
	default:
		w.log.Debug("gossip", "msg", line)
	}
	return len(p), nil
}
