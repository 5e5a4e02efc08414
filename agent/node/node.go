// Package node is the agent in node mode: it serves the CNI plugin on a unix
// socket, enrols each pod with the coordinator and runs the pod's Nebula in the
// pod's network namespace.
package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/slackhq/nebula/cert"
	"github.com/vishvananda/netlink"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/agent/follow"
	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/internal/atomicfile"
	"github.com/sealmesh/sealmesh/internal/serve"
	"github.com/sealmesh/sealmesh/kube"
)

// nebulaOverhead is what Nebula adds to each packet on an IPv6 underlay (40 IP +
// 8 UDP + 16 header + 16 AEAD tag); using it for IPv4 too wastes 20 bytes and
// never fragments.
const nebulaOverhead = 80

// Config wires the agent.
type Config struct {
	Log         *slog.Logger
	Coordinator *api.Client
	Issuer      attest.Issuer
	// StateDir holds per-pod Nebula logs.
	StateDir string
	// TunnelCommand starts a tunnel process (sealmesh-tunnel), which runs
	// pods' Nebula instances; it gets --control <socket> appended.
	TunnelCommand []string
	// PodsPerProcess is how many pods share a tunnel process; 0 means
	// DefaultPodsPerProcess.
	PodsPerProcess int
	StartTimeout   time.Duration
	// Pods, when set, is the Kubernetes API: before enrolling a pod the agent
	// requires it to exist on NodeName with the UID the runtime gave, and
	// takes its service account from it (for the roles' podSelector).
	Pods     PodSource
	NodeName string
	// Follower reads the manifest for Run (and refreshes the client's
	// trust in coordinators as it does); nil: the manifest is not followed.
	Follower *follow.Follower
}

// PodSource reads pods from the Kubernetes API (kube.Cluster).
type PodSource interface {
	Pod(ctx context.Context, namespace, name string) (kube.Pod, error)
}

// Agent is the node agent.
type Agent struct {
	cfg  Config
	mu   sync.Mutex
	pods map[string]*pod // by containerID/ifName
	// contact is when a ready coordinator last answered (unix nanoseconds).
	contact atomic.Int64
	// serving is set once the CNI socket answers (after Restore).
	serving atomic.Bool
	metrics *metrics
	// self is the pod this agent runs in (pod mode).
	self *cniapi.Request

	hostsMu sync.Mutex
	hosts   map[string]*tunnelHost
}

// Ready reports whether the agent serves the CNI plugin.
func (a *Agent) Ready() bool { return a.serving.Load() }

// statusFresh is how long a coordinator's answer counts for STATUS: the
// runtime asks often, and an enrolment or probe within it is proof enough.
const statusFresh = 10 * time.Second

type pod struct {
	req    cniapi.Request
	result cniapi.AddResult
	// host runs the pod's Nebula instance, named instance.
	host         *tunnelHost
	instance     string
	fingerprint  string
	releaseToken string
	ip           string
	// certificate is the tunnel's current one (PEM): its key is the pod's.
	certificate string
	// renewAt is two thirds of the way from its receipt to its end (its
	// NotBefore is backdated for clock skew, so it would say too early).
	renewAt time.Time
	// retry, when set, holds renewal back after a failure.
	retry time.Time
	// head is the manifest transition the tunnel's configuration comes from.
	head string
}

// New returns an agent.
func New(cfg Config) *Agent {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 20 * time.Second
	}
	if cfg.PodsPerProcess <= 0 {
		cfg.PodsPerProcess = DefaultPodsPerProcess
	}
	a := &Agent{cfg: cfg, pods: map[string]*pod{}, hosts: map[string]*tunnelHost{}}
	a.initMetrics()
	return a
}

func key(r *cniapi.Request) string { return r.ContainerID + "/" + r.IfName }

// instanceID names a pod's Nebula instance in its tunnel process.
func instanceID(r *cniapi.Request) string { return r.ContainerID + "-" + r.IfName }

func validate(r *cniapi.Request) error { return r.Validate() }

// Add enrols the pod and brings its Nebula interface up. Adding an attachment
// that is already up returns it again.
func (a *Agent) Add(ctx context.Context, r *cniapi.Request) (*cniapi.AddResult, error) {
	if err := validate(r); err != nil {
		return nil, err
	}
	if r.Netns == "" {
		return nil, errors.New("netns is required")
	}
	a.mu.Lock()
	if p, ok := a.pods[key(r)]; ok && p.host.proc.Alive() {
		a.mu.Unlock()
		res := p.result
		return &res, nil
	}
	a.mu.Unlock()
	res, err := a.attach(ctx, r)
	a.metrics.enrolments.WithLabelValues(result(err)).Inc()
	return res, err
}

// attach enrols the pod and starts its tunnel.
func (a *Agent) attach(ctx context.Context, r *cniapi.Request) (*cniapi.AddResult, error) {
	mtu := r.MTU
	var err error
	if mtu == 0 {
		if mtu, err = podMTU(r.Netns); err != nil {
			return nil, err
		}
	}

	w := api.Workload{Namespace: r.PodNamespace, Name: r.PodName, UID: r.PodUID, ContainerID: r.ContainerID}
	if a.cfg.Pods != nil {
		if w.ServiceAccount, err = a.checkPod(ctx, r); err != nil {
			return nil, err
		}
	}
	e, err := enrol.Workload(ctx, a.cfg.Coordinator, a.cfg.Issuer, w)
	if err != nil {
		return nil, err
	}
	a.contact.Store(time.Now().UnixNano())
	crt, _, err := cert.UnmarshalCertificateFromPEM([]byte(e.Certificate))
	if err != nil {
		return nil, fmt.Errorf("coordinator sent a bad certificate: %w", err)
	}
	fp, _ := crt.Fingerprint()
	release := func() {
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.cfg.Coordinator.Release(rctx, &api.ReleaseRequest{Fingerprint: fp, ReleaseToken: e.ReleaseToken, IP: e.IP}); err != nil {
			a.cfg.Log.Warn("release IP", "ip", e.IP, "err", err)
		}
	}

	cfg, err := tunnel.Config(e.EnrolResponse, e.PrivateKey, tunnel.Options{Device: r.IfName, MTU: mtu})
	if err != nil {
		release()
		return nil, err
	}
	logPath := filepath.Join(a.podsDir(), r.ContainerID+"-"+r.IfName+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		release()
		return nil, err
	}
	h, err := a.place()
	if err != nil {
		release()
		return nil, err
	}
	id := instanceID(r)
	sctx, cancel := context.WithTimeout(ctx, a.cfg.StartTimeout)
	err = tunnel.AddInstance(sctx, a.hostControl(h.id), id, &tunnel.AddRequest{Netns: r.Netns, Log: logPath, Config: cfg})
	cancel()
	if err != nil {
		// It may have started after all (a timeout): stop it either way.
		a.removeInstance(h, id)
		a.unplace(h)
		release()
		return nil, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	p := &pod{
		req:    *r,
		result: cniapi.AddResult{Interface: r.IfName, Address: e.IP, Addresses: e.IPs, MTU: mtu},
		host:   h, instance: id, fingerprint: fp, releaseToken: e.ReleaseToken, ip: e.IP,
		certificate: e.Certificate, renewAt: enrol.RenewAt(e.NotAfter), head: e.Head,
	}
	if err := a.save(p); err != nil {
		a.removeInstance(h, id)
		a.unplace(h)
		release()
		return nil, err
	}
	a.mu.Lock()
	a.pods[key(r)] = p
	a.mu.Unlock()
	a.cfg.Log.Info("pod attached", "container", r.ContainerID, "pod", r.PodNamespace+"/"+r.PodName,
		"name", e.Name, "role", e.Role, "ip", e.IP, "tunnel", h.id, "mtu", mtu)
	res := p.result
	return &res, nil
}

// checkPod requires the pod the runtime names to exist on this node with that
// UID, and returns its service account: the node's evidence speaks for the
// pod, so the agent must not speak for one that is not here.
func (a *Agent) checkPod(ctx context.Context, r *cniapi.Request) (string, error) {
	if r.PodNamespace == "" || r.PodName == "" || r.PodUID == "" {
		return "", fmt.Errorf("pod identity: the runtime passed no K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID")
	}
	p, err := a.cfg.Pods.Pod(ctx, r.PodNamespace, r.PodName)
	if err != nil {
		return "", fmt.Errorf("pod identity: pod %s/%s: %w", r.PodNamespace, r.PodName, err)
	}
	switch {
	case p.UID != r.PodUID:
		return "", fmt.Errorf("pod identity: pod %s/%s has UID %s, the runtime says %s", r.PodNamespace, r.PodName, p.UID, r.PodUID)
	case p.Node != a.cfg.NodeName:
		return "", fmt.Errorf("pod identity: pod %s/%s runs on node %q, not on this node %q", r.PodNamespace, r.PodName, p.Node, a.cfg.NodeName)
	}
	return p.ServiceAccount, nil
}

// Pod names the pod an agent in pod mode runs in.
type Pod struct {
	ContainerID, IfName, Namespace, Name, UID string
}

// selfNetns is this process's own network namespace.
const selfNetns = "/proc/self/ns/net"

// Self attaches the pod this agent runs in (pod mode): its own TEE's evidence,
// its own network namespace, no CNI. A tunnel an earlier run of this agent
// left running is taken up (Restore) instead.
func (a *Agent) Self(ctx context.Context, p Pod) (*cniapi.AddResult, error) {
	a.self = &cniapi.Request{ContainerID: p.ContainerID, Netns: selfNetns, IfName: p.IfName,
		PodNamespace: p.Namespace, PodName: p.Name, PodUID: p.UID}
	a.Restore(ctx)
	res, err := a.Add(ctx, a.self)
	a.serving.Store(err == nil)
	return res, err
}

// Leave detaches the pod this agent runs in (pod mode, when it stops).
func (a *Agent) Leave(ctx context.Context) error {
	a.serving.Store(false)
	if a.self == nil {
		return nil
	}
	return a.Del(ctx, a.self)
}

// Del stops the pod's Nebula and gives its IP back. Unknown pods succeed.
func (a *Agent) Del(ctx context.Context, r *cniapi.Request) error {
	if err := validate(r); err != nil {
		return err
	}
	a.mu.Lock()
	p, ok := a.pods[key(r)]
	delete(a.pods, key(r))
	a.mu.Unlock()
	if !ok {
		return nil
	}
	a.stop(ctx, p)
	a.cfg.Log.Info("pod detached", "container", r.ContainerID, "ip", p.result.Address)
	return nil
}

func (a *Agent) stop(ctx context.Context, p *pod) {
	a.removeInstance(p.host, p.instance)
	a.unplace(p.host)
	a.forget(&p.req)
	if err := a.cfg.Coordinator.Release(ctx, &api.ReleaseRequest{Fingerprint: p.fingerprint, ReleaseToken: p.releaseToken, IP: p.ip}); err != nil {
		// The lease ends with the certificate anyway; DEL must not fail for it.
		a.cfg.Log.Warn("release IP", "ip", p.result.Address, "err", err)
	}
}

// Check verifies the pod's Nebula runs and its interface carries the overlay IP.
func (a *Agent) Check(ctx context.Context, r *cniapi.Request) error {
	if err := validate(r); err != nil {
		return err
	}
	a.mu.Lock()
	p, ok := a.pods[key(r)]
	a.mu.Unlock()
	if !ok {
		return fmt.Errorf("no sealmesh attachment for container %s interface %s", r.ContainerID, r.IfName)
	}
	if !a.running(ctx, p) {
		return fmt.Errorf("nebula for container %s is not running", r.ContainerID)
	}
	return ns.WithNetNSPath(r.Netns, func(ns.NetNS) error {
		l, err := netlink.LinkByName(r.IfName)
		if err != nil {
			return fmt.Errorf("interface %s in %s: %w", r.IfName, r.Netns, err)
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, ad := range addrs {
			if ad.IPNet.String() == p.result.Address {
				return nil
			}
		}
		return fmt.Errorf("interface %s in %s lacks %s", r.IfName, r.Netns, p.result.Address)
	})
}

// Status reports whether ADD can succeed now: some coordinator is reachable
// and ready (CNI STATUS).
func (a *Agent) Status(ctx context.Context) *cniapi.Status {
	last := time.Unix(0, a.contact.Load())
	if f := a.cfg.Follower; f != nil && f.Answered().After(last) {
		last = f.Answered()
	}
	if time.Since(last) < statusFresh {
		return &cniapi.Status{Ready: true}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var why []string
	for _, c := range a.cfg.Coordinator.Coordinators(ctx) {
		st, err := c.Status(ctx)
		switch {
		case err != nil:
			why = append(why, err.Error())
		case st.State != api.StateReady && st.State != api.StateDegraded:
			why = append(why, fmt.Sprintf("coordinator %s is %s", c.URL(), st.State))
		default:
			a.contact.Store(time.Now().UnixNano())
			return &cniapi.Status{Ready: true}
		}
	}
	return &cniapi.Status{Reason: "no ready coordinator: " + strings.Join(why, "; ")}
}

// GC stops the attachments the runtime no longer lists (CNI GC) and gives
// their addresses back.
func (a *Agent) GC(ctx context.Context, network string, valid []cniapi.Attachment) {
	a.mu.Lock()
	reqs := make(map[string]cniapi.Request, len(a.pods))
	for k, p := range a.pods {
		reqs[k] = p.req
	}
	var gone []*pod
	for _, k := range collect(reqs, network, valid) {
		gone = append(gone, a.pods[k])
		delete(a.pods, k)
	}
	a.mu.Unlock()
	for _, p := range gone {
		a.stop(ctx, p)
		a.cfg.Log.Info("pod collected (the runtime no longer lists it)", "container", p.req.ContainerID, "ip", p.result.Address)
	}
}

// collect returns the keys of the attachments a GC of network removes: those
// made in that network that valid (which lists only that network's) does not
// keep. An attachment of another network is never touched (finding 19 of the
// attack review: GC for network A tore down a pod attached through network
// B), nor one recorded without a network by an older plugin, which only
// a DEL ends.
func collect(reqs map[string]cniapi.Request, network string, valid []cniapi.Attachment) []string {
	keep, keepIDs := map[string]bool{}, map[string]bool{}
	for _, v := range valid {
		keep[v.ContainerID+"/"+v.IfName] = true
		keepIDs[v.ContainerID] = true
	}
	var out []string
	for k, r := range reqs {
		if r.Network != network || r.Network == "" {
			continue
		}
		kept := keep[r.ContainerID+"/"+r.AttachIfName]
		if r.AttachIfName == "" { // added by a plugin that did not say
			kept = keepIDs[r.ContainerID]
		}
		if !kept {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Run keeps the pods' certificates fresh until ctx ends: each is renewed, with
// fresh evidence for the same key, once two thirds of its lifetime have
// passed, and every pod whose rules come from another manifest than the
// current one is renewed, so new firewall rules, lighthouses and revocations
// reach running tunnels. Renewal
// reloads the tunnel's configuration: its tunnels stay up.
func (a *Agent) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	if f := a.cfg.Follower; f != nil {
		go f.Run(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var head string
		if a.cfg.Follower != nil {
			head = a.cfg.Follower.Head()
		}
		for _, p := range a.dead(ctx) {
			a.reattach(ctx, &p.req, p.fingerprint, p.releaseToken, p.ip, p.result.Address)
		}
		a.mu.Lock()
		var due []*pod
		now := time.Now()
		for _, p := range a.pods {
			// A pod whose rules come from another manifest than the
			// current one, or whose certificate is two thirds through.
			stale := head != "" && p.head != "" && p.head != head
			if now.After(p.retry) && (stale || now.After(p.renewAt)) {
				due = append(due, p)
			}
		}
		a.mu.Unlock()
		for _, p := range due {
			err := a.renew(ctx, p)
			a.metrics.renewals.WithLabelValues(result(err)).Inc()
			if err != nil {
				a.cfg.Log.Error("renewal", "container", p.req.ContainerID, "err", err)
				a.mu.Lock()
				p.retry = time.Now().Add(5 * time.Second)
				a.mu.Unlock()
			}
		}
	}
}

// renew enrols the pod's key again and hands its tunnel the new certificate
// and the manifest's current rules.
func (a *Agent) renew(ctx context.Context, p *pod) error {
	a.mu.Lock()
	r, old, host, instance := p.req, p.certificate, p.host, p.instance
	a.mu.Unlock()
	c, _, err := cert.UnmarshalCertificateFromPEM([]byte(old))
	if err != nil {
		return err
	}
	w := api.Workload{Namespace: r.PodNamespace, Name: r.PodName, UID: r.PodUID, ContainerID: r.ContainerID}
	if a.cfg.Pods != nil {
		if w.ServiceAccount, err = a.checkPod(ctx, &r); err != nil {
			return err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The pod's key is in its tunnel process, which proves possession of
	// it; the agent never keeps it.
	podKey := enrol.Key{Public: c.PublicKey(), Prove: func(possessionKey, nonce []byte) ([]byte, error) {
		return tunnel.ProveInstance(rctx, a.hostControl(host.id), instance, &tunnel.ProveRequest{PossessionKey: possessionKey, Nonce: nonce})
	}}
	e, err := enrol.Renew(rctx, a.cfg.Coordinator, a.cfg.Issuer, w, podKey)
	if err != nil {
		return err
	}
	a.contact.Store(time.Now().UnixNano())
	if e.IP != p.result.Address {
		return fmt.Errorf("the renewed certificate carries %s, the tunnel %s", e.IP, p.result.Address)
	}
	cfg, err := tunnel.Config(e, nil, tunnel.Options{Device: r.IfName, MTU: p.result.MTU})
	if err != nil {
		return err
	}
	if err := tunnel.UpdateInstance(rctx, a.hostControl(p.host.id), p.instance, cfg); err != nil {
		return err
	}
	nc, _, err := cert.UnmarshalCertificateFromPEM([]byte(e.Certificate))
	if err != nil {
		return err
	}
	fp, _ := nc.Fingerprint()
	a.mu.Lock()
	p.certificate, p.fingerprint, p.releaseToken, p.retry, p.renewAt, p.head = e.Certificate, fp, e.ReleaseToken, time.Time{}, enrol.RenewAt(e.NotAfter), e.Head
	current := a.pods[key(&r)] == p
	a.mu.Unlock()
	if !current {
		return nil // deleted meanwhile: no record to write
	}
	if err := a.save(p); err != nil {
		return err
	}
	a.cfg.Log.Info("certificate renewed", "container", r.ContainerID, "ip", e.IP, "fingerprint", fp, "notAfter", e.NotAfter)
	return nil
}

// Shutdown lets go of the pods without stopping them: their tunnels keep
// running, and the next agent adopts them (Restore), so an agent upgrade or
// crash does not cut pods off.
func (a *Agent) Shutdown() {}

// record is what the agent keeps on disk of one attachment (StateDir/pods,
// mode 0600), so that a restarted agent finds its pods.
type record struct {
	Request      cniapi.Request   `json:"request"`
	Result       cniapi.AddResult `json:"result"`
	Fingerprint  string           `json:"fingerprint"`
	ReleaseToken string           `json:"releaseToken"`
	IP           string           `json:"ip"`
	// Tunnel is the tunnel process running the pod's Nebula instance.
	Tunnel      string    `json:"tunnel"`
	Certificate string    `json:"certificate"`
	RenewAt     time.Time `json:"renewAt"`
	Head        string    `json:"head"`
}

func (a *Agent) podsDir() string { return filepath.Join(a.cfg.StateDir, "pods") }

func recordName(r *cniapi.Request) string { return r.ContainerID + "-" + r.IfName + ".json" }

func (a *Agent) save(p *pod) error {
	a.mu.Lock()
	b, err := json.Marshal(record{Request: p.req, Result: p.result, Fingerprint: p.fingerprint, ReleaseToken: p.releaseToken,
		IP: p.ip, Tunnel: p.host.id, Certificate: p.certificate, RenewAt: p.renewAt, Head: p.head})
	a.mu.Unlock()
	if err != nil {
		return err
	}
	return atomicfile.Write(a.podsDir(), recordName(&p.req), b)
}

func (a *Agent) forget(r *cniapi.Request) {
	if err := os.Remove(filepath.Join(a.podsDir(), recordName(r))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.cfg.Log.Warn("forget pod", "container", r.ContainerID, "err", err)
	}
}

// Restore takes up the pods a previous agent attached: a tunnel still
// running is adopted; one that stopped while its pod's network namespace
// still exists is restored (enrolled again, started again); the rest are
// forgotten and their addresses released. Call it before Serve.
func (a *Agent) Restore(ctx context.Context) {
	running := a.adoptHosts(ctx)
	defer a.settleHosts(ctx, running)
	entries, err := os.ReadDir(a.podsDir())
	if err != nil {
		return // no pods yet
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.podsDir(), e.Name()))
		var rec record
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err == nil {
			err = validate(&rec.Request)
		}
		if err != nil {
			a.cfg.Log.Error("unreadable pod record; left in place", "file", e.Name(), "err", err)
			continue
		}
		r := &rec.Request
		if running[rec.Tunnel][instanceID(r)] {
			a.hostsMu.Lock()
			h := a.hosts[rec.Tunnel]
			h.pods++
			a.hostsMu.Unlock()
			a.mu.Lock()
			a.pods[key(r)] = &pod{req: *r, result: rec.Result, host: h, instance: instanceID(r), fingerprint: rec.Fingerprint, releaseToken: rec.ReleaseToken, ip: rec.IP,
				certificate: rec.Certificate, renewAt: rec.RenewAt, head: rec.Head}
			a.mu.Unlock()
			a.cfg.Log.Info("pod re-adopted", "container", r.ContainerID, "ip", rec.Result.Address, "tunnel", rec.Tunnel)
			continue
		}
		a.reattach(ctx, r, rec.Fingerprint, rec.ReleaseToken, rec.IP, rec.Result.Address)
	}
}

// reattach handles a pod whose tunnel is gone: its address is given back, and
// the pod is attached anew (enrolled again) if its netns still exists.
func (a *Agent) reattach(ctx context.Context, r *cniapi.Request, fingerprint, releaseToken, ip, was string) {
	a.forget(r)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.cfg.Coordinator.Release(rctx, &api.ReleaseRequest{Fingerprint: fingerprint, ReleaseToken: releaseToken, IP: ip}); err != nil {
		a.cfg.Log.Warn("release IP", "ip", ip, "err", err)
	}
	if _, err := os.Stat(r.Netns); err != nil {
		a.cfg.Log.Info("pod gone; forgotten", "container", r.ContainerID, "ip", was)
		return
	}
	res, err := a.Add(rctx, r)
	if err != nil {
		a.cfg.Log.Error("pod could not be restored; its runtime will see CHECK fail", "container", r.ContainerID, "err", err)
		return
	}
	a.cfg.Log.Warn("pod restored: its tunnel had stopped; enrolled again", "container", r.ContainerID, "was", was, "ip", res.Address)
}

// podMTU is the MTU of the pod's default-route link less Nebula's overhead.
func podMTU(netnsPath string) (int, error) {
	mtu := 0
	err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, rt := range routes {
			if rt.Dst == nil || rt.Dst.IP.IsUnspecified() {
				l, err := netlink.LinkByIndex(rt.LinkIndex)
				if err != nil {
					return err
				}
				mtu = l.Attrs().MTU
				return nil
			}
		}
		return errors.New("no default route: run sealmesh-cni after the primary plugin")
	})
	if err != nil {
		return 0, fmt.Errorf("pod netns %s: %w", netnsPath, err)
	}
	return mtu - nebulaOverhead, nil
}

// removeInstance stops a pod's Nebula instance in its tunnel process.
func (a *Agent) removeInstance(h *tunnelHost, id string) {
	if !h.proc.Alive() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tunnel.RemoveInstance(ctx, a.hostControl(h.id), id); err != nil {
		a.cfg.Log.Warn("stop tunnel", "tunnel", h.id, "instance", id, "err", err)
	}
}

// running reports whether the pod's instance runs.
func (a *Agent) running(ctx context.Context, p *pod) bool {
	if !p.host.proc.Alive() {
		return false
	}
	list, err := tunnel.Instances(ctx, a.hostControl(p.host.id))
	return err == nil && slices.ContainsFunc(list, func(in tunnel.InstanceInfo) bool { return in.ID == p.instance })
}

// dead takes out of the agent's pods those whose instance no longer runs:
// its tunnel process is gone, or lists it no more (its Nebula stopped).
func (a *Agent) dead(ctx context.Context) []*pod {
	a.mu.Lock()
	pods := make([]*pod, 0, len(a.pods))
	for _, p := range a.pods {
		pods = append(pods, p)
	}
	a.mu.Unlock()
	// Listed after the snapshot: a pod in it was up before the listing.
	listed := map[*tunnelHost]map[string]bool{}
	for _, p := range pods {
		if _, ok := listed[p.host]; ok || !p.host.proc.Alive() {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := tunnel.Instances(lctx, a.hostControl(p.host.id))
		cancel()
		if err != nil {
			// Alive but not answering (busy): not taken for dead.
			a.cfg.Log.Warn("tunnel process does not answer", "tunnel", p.host.id, "err", err)
			listed[p.host] = nil
			continue
		}
		listed[p.host] = map[string]bool{}
		for _, in := range list {
			listed[p.host][in.ID] = true
		}
	}
	var dead []*pod
	a.mu.Lock()
	for _, p := range pods {
		l, looked := listed[p.host]
		gone := !p.host.proc.Alive() || (looked && l != nil && !l[p.instance])
		if gone && a.pods[key(&p.req)] == p {
			delete(a.pods, key(&p.req))
			dead = append(dead, p)
		}
	}
	a.mu.Unlock()
	for _, p := range dead {
		a.unplace(p.host)
	}
	return dead
}

// Serve answers the CNI plugin on the unix socket until ctx is done.
func (a *Agent) Serve(ctx context.Context, socket string) error {
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return err
	}
	os.Remove(socket) // a stale socket from a previous run
	l, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("listen %s: %w", socket, err)
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		l.Close()
		return err
	}
	a.serving.Store(true)
	defer a.serving.Store(false)
	return serve.Run(ctx, serve.Server(a.handler(), serve.Local), serve.Limit(l, serve.Local))
}

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	route := func(path string, f func(context.Context, *cniapi.Request) (any, error)) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			var req cniapi.Request
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				writeJSON(w, http.StatusBadRequest, cniapi.Error{Error: "bad request: " + err.Error()})
				return
			}
			out, err := f(r.Context(), &req)
			if err != nil {
				writeJSON(w, http.StatusInternalServerError, cniapi.Error{Error: err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, out)
		})
	}
	route("/v1/add", func(ctx context.Context, r *cniapi.Request) (any, error) { return a.Add(ctx, r) })
	route("/v1/del", func(ctx context.Context, r *cniapi.Request) (any, error) { return struct{}{}, a.Del(ctx, r) })
	route("/v1/check", func(ctx context.Context, r *cniapi.Request) (any, error) { return struct{}{}, a.Check(ctx, r) })
	mux.HandleFunc("POST /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status(r.Context()))
	})
	mux.HandleFunc("POST /v1/gc", func(w http.ResponseWriter, r *http.Request) {
		var req cniapi.GCRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<22))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, cniapi.Error{Error: "bad request: " + err.Error()})
			return
		}
		a.GC(r.Context(), req.Network, req.Valid)
		writeJSON(w, http.StatusOK, struct{}{})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
