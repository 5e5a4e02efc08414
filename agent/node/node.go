// Package node is the agent's pod lifecycle: it enrols each pod with the
// coordinator, runs the pod's Nebula (Tunnels) in the pod's network namespace
// (Netns), renews its certificate, follows the manifest, and keeps a record
// of each pod so that a restarted agent takes them up. server.go answers the
// CNI plugin on a unix socket; the agent in pod mode attaches its own pod.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/agent/follow"
	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/api"
	"github.com/sealmesh/sealmesh/attest"
	"github.com/sealmesh/sealmesh/internal/retry"
	"github.com/sealmesh/sealmesh/kube"
)

// nebulaOverhead is what Nebula adds to each packet on an IPv6 underlay (40 IP +
// 8 UDP + 16 header + 16 AEAD tag); using it for IPv4 too wastes 20 bytes and
// never fragments.
const nebulaOverhead = 80

// Config wires the agent.
type Config struct {
	Log *slog.Logger
	// Version is the binary's, for sealmesh_build_info.
	Version     string
	Coordinator *api.Client
	Issuer      attest.Issuer
	// Retry bounds an enrolment's tries across coordinators (zero: the
	// defaults).
	Retry enrol.Retry
	// StateDir holds the pods' records and Nebula logs, and the tunnel
	// processes' records.
	StateDir string
	// Tunnels runs the pods' Nebula instances; nil: sealmesh-tunnel
	// processes started with TunnelCommand (which gets --control <socket>
	// appended), PodsPerProcess pods each (0: DefaultPodsPerProcess).
	Tunnels        Tunnels
	TunnelCommand  []string
	PodsPerProcess int
	StartTimeout   time.Duration
	// Netns looks into pods' network namespaces; nil: LinuxNetns.
	Netns Netns
	// Pods, when set, is the Kubernetes API: before enrolling a pod the agent
	// requires it to exist on NodeName with the UID the runtime gave, and
	// takes its service account from it (for the roles' podSelector).
	Pods     PodSource
	NodeName string
	// ExcludeNamespaces are namespaces whose pods are never attached (the
	// plugin's own list, checked again here).
	ExcludeNamespaces []string
	// Repair, when set, finds the running pods on NodeName that started
	// without their Nebula interface and reports them (unattached.go);
	// DeleteUnattached deletes them too, so that they start again attached.
	Repair           Repairer
	DeleteUnattached bool
	// Follower reads the manifest for Run (and refreshes the client's
	// trust in coordinators as it does); nil: the manifest is not followed.
	Follower *follow.Follower
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// PodSource reads pods from the Kubernetes API (kube.Cluster).
type PodSource interface {
	Pod(ctx context.Context, namespace, name string) (kube.Pod, error)
}

// Agent attaches pods to the mesh.
type Agent struct {
	cfg Config
	// mu guards pods and each pod's fields; no I/O is made under it.
	mu   sync.Mutex
	pods map[string]*pod // by containerID/ifName
	// contact is when a ready coordinator last answered (unix nanoseconds).
	contact atomic.Int64
	// serving is set once the CNI socket answers (after Restore).
	serving atomic.Bool
	metrics *metrics
	// self is the pod this agent runs in (pod mode).
	self *cniapi.Request
	// reported holds the UIDs of unattached pods reported; only Run's
	// goroutine touches it.
	reported map[string]bool
}

// Ready reports whether the agent serves the CNI plugin.
func (a *Agent) Ready() bool { return a.serving.Load() }

type pod struct {
	req    cniapi.Request
	result cniapi.AddResult
	// host runs the pod's Nebula instance, named instance.
	host         string
	instance     string
	fingerprint  string
	releaseToken string
	ip           string
	// certificate is the tunnel's current one (PEM): its key is the pod's.
	certificate string
	// renewAt is two thirds of the way from its receipt to its end (its
	// NotBefore is backdated for clock skew, so it would say too early).
	renewAt time.Time
	// retry, when set, holds renewal back after a failure; fails paces
	// and logs the failures (nil before the first).
	retry time.Time
	fails *retry.Failures
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Netns == nil {
		cfg.Netns = LinuxNetns{}
	}
	if cfg.Tunnels == nil {
		cfg.Tunnels = &Processes{Command: cfg.TunnelCommand, Dir: filepath.Join(cfg.StateDir, "tunnels"),
			PerProcess: cfg.PodsPerProcess, StartTimeout: cfg.StartTimeout, Log: cfg.Log}
	}
	a := &Agent{cfg: cfg, pods: map[string]*pod{}, reported: map[string]bool{}}
	a.initMetrics()
	return a
}

func key(r *cniapi.Request) string { return r.ContainerID + "/" + r.IfName }

// instanceID names a pod's Nebula instance in its tunnel process.
func instanceID(r *cniapi.Request) string { return r.ContainerID + "-" + r.IfName }

func (a *Agent) touch() { a.contact.Store(a.cfg.Now().UnixNano()) }

// Add enrols the pod and brings its Nebula interface up. Adding an attachment
// that is already up returns it again.
func (a *Agent) Add(ctx context.Context, r *cniapi.Request) (*cniapi.AddResult, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.Netns == "" {
		return nil, errors.New("netns is required")
	}
	a.mu.Lock()
	p, ok := a.pods[key(r)]
	a.mu.Unlock()
	if ok && a.cfg.Tunnels.Alive(p.host) {
		res := p.result
		return &res, nil
	}
	if cniapi.Excluded(r.PodNamespace, a.cfg.ExcludeNamespaces) {
		return a.skip(r, skipNamespace), nil
	}
	start := time.Now()
	w, why, err := a.workload(ctx, r)
	a.stage("identity", start)
	switch {
	case err != nil:
		a.metrics.enrolments.WithLabelValues(result(err)).Inc()
		return nil, err
	case why != "":
		return a.skip(r, why), nil
	}
	res, err := a.attach(enrol.WithTrace(ctx, &enrol.Trace{Stage: a.stageTook}), r, w)
	a.metrics.enrolments.WithLabelValues(result(err)).Inc()
	if err == nil {
		a.stage("total", start)
	}
	return res, err
}

// stage records how long a stage of an ADD took, from start.
func (a *Agent) stage(name string, start time.Time) { a.stageTook(name, time.Since(start)) }

func (a *Agent) stageTook(name string, d time.Duration) {
	a.metrics.addStages.WithLabelValues(name).Observe(d.Seconds())
}

// Why a pod is passed through without a Nebula interface (the metric's
// reason label).
const (
	skipNamespace   = "namespace-excluded"
	skipAnnotation  = "annotation"
	skipHostNetwork = "host-network"
)

var skipReasons = map[string]string{
	skipNamespace:   "its namespace is excluded",
	skipAnnotation:  "it is annotated " + cniapi.AttachAnnotation + `: "false"`,
	skipHostNetwork: "it shares the node's network (hostNetwork)",
}

// skip answers ADD for a pod that is not to be attached.
func (a *Agent) skip(r *cniapi.Request, why string) *cniapi.AddResult {
	a.metrics.skipped.WithLabelValues(why).Inc()
	a.cfg.Log.Info("pod not attached", "container", r.ContainerID, "pod", r.PodNamespace+"/"+r.PodName, "reason", skipReasons[why])
	return &cniapi.AddResult{Skipped: skipReasons[why]}
}

// workload is what the agent says of the pod: the runtime's identity,
// checked against the Kubernetes API when it has one. A pod that opted out
// or shares the node's network comes back with why it is skipped.
func (a *Agent) workload(ctx context.Context, r *cniapi.Request) (w api.Workload, skip string, err error) {
	w = api.Workload{Namespace: r.PodNamespace, Name: r.PodName, UID: r.PodUID, ContainerID: r.ContainerID}
	if a.cfg.Pods == nil {
		return w, "", nil
	}
	p, err := a.checkPod(ctx, r)
	switch {
	case err != nil:
		return w, "", err
	case p.HostNetwork:
		return w, skipHostNetwork, nil
	case p.Annotations[cniapi.AttachAnnotation] == "false":
		return w, skipAnnotation, nil
	}
	w.ServiceAccount = p.ServiceAccount
	return w, "", nil
}

// attach enrols the pod and starts its tunnel.
func (a *Agent) attach(ctx context.Context, r *cniapi.Request, w api.Workload) (*cniapi.AddResult, error) {
	// The interface's MTU is read in the pod's namespace while the
	// enrolment is under way: neither needs the other.
	mtuc := make(chan mtuResult, 1)
	go func() { mtuc <- a.mtu(r) }()
	e, err := a.cfg.Retry.Workload(ctx, a.cfg.Coordinator, a.cfg.Issuer, w)
	mtu := <-mtuc
	if err != nil {
		return nil, err
	}
	a.touch()
	crt, _, err := cert.UnmarshalCertificateFromPEM([]byte(e.Certificate))
	if err != nil {
		return nil, fmt.Errorf("coordinator sent a bad certificate: %w", err)
	}
	fp, _ := crt.Fingerprint()
	release := func() { a.release(fp, e.ReleaseToken, e.IP) }
	if mtu.err != nil {
		// The namespace went while the pod enrolled: its address goes
		// back.
		release()
		return nil, mtu.err
	}

	cfg := nebulaconfig.Config(e.EnrolResponse, e.PrivateKey, nebulaconfig.Options{Device: r.IfName, MTU: mtu.mtu})
	logPath, err := a.podLog(r)
	if err != nil {
		release()
		return nil, err
	}
	id := instanceID(r)
	start := time.Now()
	host, took, err := a.cfg.Tunnels.Start(ctx, id, &tunnel.AddRequest{Netns: r.Netns, Log: logPath, Config: cfg})
	if err != nil {
		release()
		return nil, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	a.stage("tunnel", start)
	// Parts of the tunnel stage, as the tunnel process timed them (a
	// process from before it says nothing).
	if took.Nebula > 0 {
		a.stageTook("prepare", took.Prepare)
		a.stageTook("nebula", took.Nebula)
		a.stageTook("interface", took.Interface)
	}
	p := &pod{
		req:    *r,
		result: cniapi.AddResult{Interface: r.IfName, Address: e.IP, Addresses: e.IPs, MTU: mtu.mtu},
		host:   host, instance: id, fingerprint: fp, releaseToken: e.ReleaseToken, ip: e.IP,
		certificate: e.Certificate, renewAt: enrol.RenewAt(a.cfg.Now(), e.NotAfter), head: e.Head,
	}
	start = time.Now()
	if err := a.save(p); err != nil {
		a.cfg.Tunnels.Stop(host, id)
		release()
		return nil, err
	}
	a.stage("record", start)
	a.mu.Lock()
	a.pods[key(r)] = p
	a.mu.Unlock()
	a.cfg.Log.Info("pod attached", "container", r.ContainerID, "pod", r.PodNamespace+"/"+r.PodName,
		"name", e.Name, "role", e.Role, "ip", e.IP, "tunnel", host, "mtu", mtu.mtu)
	res := p.result
	return &res, nil
}

// mtuResult is what the MTU lookup beside the enrolment found.
type mtuResult struct {
	mtu int
	err error
}

// mtu is the MTU of the pod's Nebula interface: the request's, or its
// primary link's less Nebula's overhead.
func (a *Agent) mtu(r *cniapi.Request) mtuResult {
	defer a.stage("mtu", time.Now())
	if r.MTU != 0 {
		return mtuResult{mtu: r.MTU}
	}
	link, err := a.cfg.Netns.MTU(r.Netns)
	return mtuResult{mtu: link - nebulaOverhead, err: err}
}

// release gives an address back; the lease ends with the certificate
// anyway, so a failure is logged, not returned.
func (a *Agent) release(fingerprint, releaseToken, ip string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.cfg.Coordinator.Release(ctx, &api.ReleaseRequest{Fingerprint: fingerprint, ReleaseToken: releaseToken, IP: ip}); err != nil {
		a.cfg.Log.Warn("release IP", "ip", ip, "err", err)
	}
}

// checkPod requires the pod the runtime names to exist on this node with that
// UID, and returns it: the node's evidence speaks for the pod, so the agent
// must not speak for one that is not here.
func (a *Agent) checkPod(ctx context.Context, r *cniapi.Request) (kube.Pod, error) {
	if r.PodNamespace == "" || r.PodName == "" || r.PodUID == "" {
		return kube.Pod{}, fmt.Errorf("pod identity: the runtime passed no K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID")
	}
	p, err := a.cfg.Pods.Pod(ctx, r.PodNamespace, r.PodName)
	if err != nil {
		return kube.Pod{}, fmt.Errorf("pod identity: pod %s/%s: %w", r.PodNamespace, r.PodName, err)
	}
	switch {
	case p.UID != r.PodUID:
		return kube.Pod{}, fmt.Errorf("pod identity: pod %s/%s has UID %s, the runtime says %s", r.PodNamespace, r.PodName, p.UID, r.PodUID)
	case p.Node != a.cfg.NodeName:
		return kube.Pod{}, fmt.Errorf("pod identity: pod %s/%s runs on node %q, not on this node %q", r.PodNamespace, r.PodName, p.Node, a.cfg.NodeName)
	}
	return p, nil
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

// SelfReady is pod mode's readiness: the pod is attached and its
// certificate has not expired (a pod whose renewals failed past its
// certificate's end serves no handshake, so it is not ready).
func (a *Agent) SelfReady() error {
	if !a.serving.Load() || a.self == nil {
		return errors.New("not attached to the mesh yet")
	}
	a.mu.Lock()
	p, ok := a.pods[key(a.self)]
	var pem string
	if ok {
		pem = p.certificate
	}
	a.mu.Unlock()
	if !ok {
		return errors.New("not attached to the mesh")
	}
	c, _, err := cert.UnmarshalCertificateFromPEM([]byte(pem))
	if err != nil {
		return fmt.Errorf("its certificate: %w", err)
	}
	if end := c.NotAfter(); !a.cfg.Now().Before(end) {
		return fmt.Errorf("certificate expired at %s and not renewed", end.UTC().Format(time.RFC3339))
	}
	return nil
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
	if err := r.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	p, ok := a.pods[key(r)]
	delete(a.pods, key(r))
	a.mu.Unlock()
	if !ok {
		return nil
	}
	a.stop(p)
	a.cfg.Log.Info("pod detached", "container", r.ContainerID, "ip", p.result.Address)
	return nil
}

func (a *Agent) stop(p *pod) {
	a.cfg.Tunnels.Stop(p.host, p.instance)
	a.forget(&p.req)
	a.release(p.fingerprint, p.releaseToken, p.ip)
}

// Check verifies the pod's Nebula runs and its interface carries the overlay IP.
func (a *Agent) Check(ctx context.Context, r *cniapi.Request) error {
	if err := r.Validate(); err != nil {
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
	return a.cfg.Netns.HasAddress(r.Netns, r.IfName, p.result.Address)
}

// running reports whether the pod's instance runs.
func (a *Agent) running(ctx context.Context, p *pod) bool {
	if !a.cfg.Tunnels.Alive(p.host) {
		return false
	}
	list, err := a.cfg.Tunnels.Instances(ctx, p.host)
	return err == nil && instanceSet(list)[p.instance]
}

// Status answers CNI STATUS: the socket answers only once the pods of a
// previous agent are taken up (Restore runs before Serve), so an answer is
// ready. A coordinator that is not ready fails each ADD (closed,
// retryable) rather than the node's network as a whole, which would hold
// back the coordinators' own pods.
func (a *Agent) Status(context.Context) *cniapi.Status {
	return &cniapi.Status{Ready: true}
}
