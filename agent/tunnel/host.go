package tunnel

import (
	"context"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/slackhq/nebula"
	"github.com/slackhq/nebula/cert"
	"github.com/slackhq/nebula/config"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/internal/serve"
)

// A host runs many pods' Nebula instances in one process. Each instance is
// created on a thread inside its pod's network namespace, so its TUN device and
// UDP sockets live there; after that Nebula's goroutines run on any thread of
// the process (they are in the node's namespace) and only use those
// descriptors. The few things Nebula would otherwise do by namespace rather
// than by descriptor are taken away from it here (see netnsSafe) or run back
// inside the pod's namespace (reloads).
type host struct {
	log     *slog.Logger
	version string
	mu      sync.Mutex
	inst    map[string]*instance
}

type instance struct {
	ctrl      *nebula.Control
	c         *config.C
	key       string   // the pod's private key (PEM), kept for reloads
	advertise []string // the pod's underlay addresses with Nebula's port
	dev       string   // the TUN device in the pod ("" if none)
	netns     netnsDoer
	logFile   *os.File    // nil: the host's log
	stopping  atomic.Bool // remove has begun: the TUN reader's error is expected
	took      Started     // how its start went
}

// AddRequest asks a host for a pod's instance.
type AddRequest struct {
	// Netns is the pod's network namespace (a path); "" runs the instance
	// in the host's own (the lighthouse).
	Netns string `json:"netns"`
	// Log is where the instance writes Nebula's log (appended); "": the
	// host's log.
	Log string `json:"log"`
	// Config is Nebula's configuration, private key included (Config).
	Config *nebulaconfig.Nebula `json:"config"`
}

// Started is a host's answer to AddRequest: how long the instance's start
// took in the host, by part, for the agent's ADD stages. A host from before
// it answers nothing (zero).
type Started struct {
	// Prepare is the pod's namespace and the instance's log opened, its
	// underlay addresses read and its configuration loaded.
	Prepare time.Duration `json:"prepare"`
	// Nebula is nebula.Main: Nebula's configuration, certificate and
	// firewall loaded, the pod's TUN device and UDP socket made.
	Nebula time.Duration `json:"nebula"`
	// Interface is Nebula's Start: the pod's interface given its MTU and
	// addresses and brought up (and Nebula's goroutines started).
	Interface time.Duration `json:"interface"`
}

// InstanceInfo is one running instance in a host's listing.
type InstanceInfo struct {
	ID string `json:"id"`
	// Tunnels is the number of hosts this instance has a tunnel with.
	Tunnels int `json:"tunnels"`
}

// netnsDoer runs functions in an instance's namespace: a pod's (ns.NetNS)
// or the host's own (currentNS).
type netnsDoer interface {
	Do(func(ns.NetNS) error) error
	Close() error
}

// instanceRE is an instance id's alphabet; its length is checked apart
// (validInstance): a bounded repetition compiles into as many copies of
// the class, and {0,300} cost every tunnel process 2.5 ms and 3,900
// allocations at start (GODEBUG=inittrace=1).
var instanceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]*$`)

// maxInstanceID is the longest instance id (a container id and an
// interface name, with room to spare).
const maxInstanceID = 301

func validInstance(id string) bool { return len(id) <= maxInstanceID && instanceRE.MatchString(id) }

// Serve runs a host answering on the unix socket control until ctx is done,
// then stops every instance. ready is called once the socket answers.
func Serve(ctx context.Context, log *slog.Logger, control, version string, ready func()) error {
	h := &host{log: log, version: version, inst: map[string]*instance{}}
	os.Remove(control) // left by a host that died
	l, err := net.Listen("unix", control)
	if err != nil {
		return fmt.Errorf("tunnel: control socket: %w", err)
	}
	if err := os.Chmod(control, 0o600); err != nil {
		l.Close()
		return err
	}
	srv := serve.Server(h.handler(), serve.Local)
	go srv.Serve(serve.Limit(l, serve.Local))
	if ready != nil {
		ready()
	}
	<-ctx.Done()
	srv.Close()
	os.Remove(control)
	h.mu.Lock()
	ids := make([]string, 0, len(h.inst))
	for id := range h.inst {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	for _, id := range ids {
		h.remove(id)
	}
	return nil
}

func (h *host) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/tunnels/{id}", func(w http.ResponseWriter, r *http.Request) {
		var req AddRequest
		var took Started
		err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req)
		if err == nil {
			took, err = h.add(r.PathValue("id"), &req)
		}
		answer(w, took, err)
	})
	mux.HandleFunc("POST /v1/tunnels/{id}/config", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err == nil {
			err = h.reload(r.PathValue("id"), b)
		}
		reply(w, err)
	})
	mux.HandleFunc("POST /v1/tunnels/{id}/prove", func(w http.ResponseWriter, r *http.Request) {
		var req ProveRequest
		err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req)
		var proof []byte
		if err == nil {
			proof, err = h.prove(r.PathValue("id"), &req)
		}
		answer(w, struct {
			Proof []byte `json:"proof"`
		}{proof}, err)
	})
	mux.HandleFunc("DELETE /v1/tunnels/{id}", func(w http.ResponseWriter, r *http.Request) {
		h.remove(r.PathValue("id"))
	})
	mux.HandleFunc("GET /v1/tunnels", func(w http.ResponseWriter, r *http.Request) {
		answer(w, h.list(), nil)
	})
	mux.Handle("GET /v1/metrics", nebulaMetrics(false))
	return mux
}

// answer writes v as JSON, or err as reply does.
func answer(w http.ResponseWriter, v any, err error) {
	if err != nil {
		reply(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func reply(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
	case errors.Is(err, errNoInstance):
		http.Error(w, err.Error(), http.StatusNotFound)
	default:
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
}

var errNoInstance = errors.New("no such tunnel")

// add starts an instance in the pod's namespace.
func (h *host) add(id string, req *AddRequest) (Started, error) {
	if !validInstance(id) {
		return Started{}, fmt.Errorf("tunnel id %q: want at most %d letters, digits, '_', '.', '-'", id, maxInstanceID)
	}
	h.mu.Lock()
	_, dup := h.inst[id]
	if !dup {
		h.inst[id] = nil // reserved while it starts
	}
	h.mu.Unlock()
	if dup {
		return Started{}, fmt.Errorf("tunnel %s already runs", id)
	}
	start := time.Now()
	in, err := h.start(req)
	elapsed := time.Since(start)
	h.mu.Lock()
	if err != nil {
		delete(h.inst, id)
	} else {
		h.inst[id] = in
	}
	h.mu.Unlock()
	if err != nil {
		h.log.Error("tunnel start failed", "tunnel", id, "err", err)
		return Started{}, err
	}
	h.log.Info("tunnel started", "tunnel", id, "netns", req.Netns, "advertise", in.advertise, "took", elapsed)
	return in.took, nil
}

func (h *host) start(req *AddRequest) (*instance, error) {
	if req.Config == nil {
		return nil, errors.New("tunnel: no config")
	}
	begin := time.Now()
	cfg := *req.Config
	in := &instance{netns: currentNS{}, key: cfg.PKI.Key}
	if !cfg.Tun.Disabled {
		in.dev = cfg.Tun.Dev
	}
	fail := func(err error) (*instance, error) {
		in.netns.Close()
		if in.logFile != nil {
			in.logFile.Close()
		}
		return nil, err
	}
	if req.Netns != "" {
		netns, err := ns.GetNS(req.Netns)
		if err != nil {
			return nil, fmt.Errorf("tunnel: pod netns: %w", err)
		}
		in.netns = netns
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Logging.Level))
	handler := h.log.Handler()
	if req.Log != "" {
		var err error
		if in.logFile, err = os.OpenFile(req.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			return fail(fmt.Errorf("tunnel: log: %w", err))
		}
		handler = slog.NewJSONHandler(in.logFile, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(stopNoise{handler, &in.stopping})
	err := in.netns.Do(func(ns.NetNS) error {
		if req.Netns != "" {
			var err error
			if in.advertise, err = underlayAddrs(cfg.Listen.Port); err != nil {
				return err
			}
		}
		b, err := in.render(cfg)
		if err != nil {
			return err
		}
		in.c = config.NewC(log)
		if err := in.c.LoadString(string(b)); err != nil {
			return fmt.Errorf("tunnel: load config: %w", err)
		}
		// On this thread, inside the pod's namespace: the TUN device and
		// the UDP sockets are made here, and the interface is configured
		// (addresses, routes) before Start returns.
		t0 := time.Now()
		in.ctrl, err = nebula.Main(in.c, false, h.version, log, newDevice)
		if err != nil {
			return fmt.Errorf("tunnel: start nebula: %w", err)
		}
		t1 := time.Now()
		if err := in.ctrl.Start(); err != nil {
			return fmt.Errorf("tunnel: start nebula: %w", err)
		}
		in.took = Started{Prepare: t0.Sub(begin), Nebula: t1.Sub(t0), Interface: time.Since(t1)}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return in, nil
}

// render is the instance's configuration as Nebula loads it. In a pod's
// namespace, with what Nebula would otherwise learn from the thread it runs
// on: its lighthouse updates list the node's interfaces (net.Interfaces, by
// namespace), so the list is shut and the pod's underlay addresses, read
// inside its namespace, are advertised instead.
func (in *instance) render(cfg nebulaconfig.Nebula) ([]byte, error) {
	if _, own := in.netns.(currentNS); !own {
		cfg.Lighthouse.AdvertiseAddrs = in.advertise
		cfg.Lighthouse.LocalAllowList = &nebulaconfig.AllowList{Interfaces: map[string]bool{".*": false}}
	}
	return cfg.Render()
}

// currentNS is the host's own namespace, for an instance that has no pod
// (the lighthouse): Do runs the function as it is.
type currentNS struct{}

func (currentNS) Do(f func(ns.NetNS) error) error { return f(nil) }
func (currentNS) Close() error                    { return nil }

// underlayAddrs are the calling thread's namespace's unicast addresses
// (neither loopback nor link-local) with port.
func underlayAddrs(port int) ([]string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("tunnel: pod interfaces: %w", err)
	}
	out := []string{}
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			return nil, fmt.Errorf("tunnel: pod interface %s: %w", i.Name, err)
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || !ip.Unmap().IsGlobalUnicast() {
				continue
			}
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
		}
	}
	slices.Sort(out)
	return out, nil
}

// prove makes an instance's proof of possession of its key for an
// enrolment (renewal), so the key stays in this process.
func (h *host) prove(id string, req *ProveRequest) ([]byte, error) {
	h.mu.Lock()
	in := h.inst[id]
	h.mu.Unlock()
	if in == nil {
		return nil, fmt.Errorf("%w: %s", errNoInstance, id)
	}
	priv, _, _, err := cert.UnmarshalPrivateKeyFromPEM([]byte(in.key))
	if err != nil {
		return nil, fmt.Errorf("tunnel %s: its key: %w", id, err)
	}
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("tunnel %s: its key: %w", id, err)
	}
	return api.Prove(priv, req.PossessionKey, req.Nonce, k.PublicKey().Bytes())
}

// reload applies a configuration sent without a key to an instance, inside
// its pod's namespace (a reload that changes the interface's routes or MTU
// talks netlink by namespace).
func (h *host) reload(id string, next []byte) error {
	h.mu.Lock()
	in := h.inst[id]
	h.mu.Unlock()
	if in == nil {
		return fmt.Errorf("%w: %s", errNoInstance, id)
	}
	cfg, err := nebulaconfig.Parse(next)
	if err != nil {
		return err
	}
	cfg.PKI.Key = in.key
	b, err := in.render(*cfg)
	if err != nil {
		return err
	}
	err = in.netns.Do(func(ns.NetNS) error { return in.c.ReloadConfigString(string(b)) })
	if err != nil {
		h.log.Error("tunnel update refused", "tunnel", id, "err", err)
		return err
	}
	h.log.Info("tunnel updated", "tunnel", id)
	return nil
}

// remove stops an instance and waits for its readers; an unknown one is gone
// already.
func (h *host) remove(id string) {
	h.mu.Lock()
	in := h.inst[id]
	if in != nil {
		delete(h.inst, id)
	}
	h.mu.Unlock()
	if in == nil {
		return
	}
	in.stopping.Store(true)
	done := make(chan struct{})
	go func() { in.ctrl.Wait(); close(done) }()
	stopped := func() bool {
		select {
		case <-done:
			return true
		case <-time.After(5 * time.Second):
			return false
		}
	}
	// Nebula's Stop closes the TUN's and the UDP socket's descriptors while
	// its TUN reader may be on its way back into poll(2) with their numbers
	// (a wake-up makes poll look its descriptors up again). In a process
	// running other pods' instances the numbers are soon reused — a netlink
	// socket, a control connection — and the reader then waits on another
	// file, for good, and may read from it: remove took 5 s and left a
	// thread behind. Deleting the device first fails the reader's poll
	// while the descriptors are still its own, and a reader's error makes
	// Nebula stop itself from that reader, so no TUN reader is left when
	// the descriptors close.
	if in.dev != "" && h.deleteDevice(in) {
		stopped()
	}
	in.ctrl.Stop() // nothing left to do if the reader's error stopped it
	if !stopped() {
		h.log.Warn("tunnel readers still running after stop", "tunnel", id)
	}
	in.netns.Close()
	if in.logFile != nil {
		in.logFile.Close()
	}
	h.log.Info("tunnel stopped", "tunnel", id)
}

// deleteDevice deletes the instance's TUN device in its pod; false if there
// was none to delete (the namespace went first, taking the device with it).
func (h *host) deleteDevice(in *instance) bool {
	err := in.netns.Do(func(ns.NetNS) error {
		nl, err := netlink.NewHandle(unix.NETLINK_ROUTE) // one socket for both requests
		if err != nil {
			return err
		}
		defer nl.Close()
		l, err := nl.LinkByName(in.dev)
		if err != nil {
			return err
		}
		return nl.LinkDel(l)
	})
	if err != nil {
		h.log.Debug("tunnel device not deleted", "dev", in.dev, "err", err)
		return false
	}
	return true
}

// stopNoise drops the error Nebula logs when its TUN device goes away, once
// remove deleted it on purpose: an ERROR line per deleted pod would be a
// false alarm.
type stopNoise struct {
	slog.Handler
	stopping *atomic.Bool
}

func (s stopNoise) Handle(ctx context.Context, r slog.Record) error {
	if s.stopping.Load() && r.Message == "Error while reading outbound packet, closing" {
		return nil
	}
	return s.Handler.Handle(ctx, r)
}

func (s stopNoise) WithAttrs(as []slog.Attr) slog.Handler {
	return stopNoise{s.Handler.WithAttrs(as), s.stopping}
}

func (s stopNoise) WithGroup(name string) slog.Handler {
	return stopNoise{s.Handler.WithGroup(name), s.stopping}
}

// list reports the running instances; one whose Nebula stopped by itself is
// dropped here, so the agent sees it gone.
func (h *host) list() []InstanceInfo {
	h.mu.Lock()
	var dead []string
	out := []InstanceInfo{}
	for id, in := range h.inst {
		if in == nil {
			continue // starting
		}
		if in.ctrl.Context().Err() != nil {
			dead = append(dead, id)
			continue
		}
		// One entry per overlay address: count hosts by their tunnel index.
		peers := map[uint32]bool{}
		for _, hi := range in.ctrl.ListHostmapHosts(false) {
			peers[hi.LocalIndex] = true
		}
		out = append(out, InstanceInfo{ID: id, Tunnels: len(peers)})
	}
	h.mu.Unlock()
	for _, id := range dead {
		h.log.Error("tunnel stopped by itself", "tunnel", id)
		h.remove(id)
	}
	slices.SortFunc(out, func(a, b InstanceInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}
