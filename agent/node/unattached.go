package node

import (
	"context"
	"time"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/kube"
)

// Pods that started before sealmesh-cni was chained on their node (installed
// after them, or the plugin taken out and put back) run without their Nebula
// interface, and the runtime never asks about them again. The agent finds
// them by comparing the node's running pods with what it attached, reports
// each (an event on the pod, a gauge) and, with Repair, deletes it so that
// its controller makes it again through the chain (Istio CNI's repair
// controller does the same for its race).

// Repairer is what the agent asks of the Kubernetes API for this
// (kube.Cluster).
type Repairer interface {
	RunningOn(ctx context.Context, node string) ([]kube.Pod, error)
	Event(ctx context.Context, p kube.Pod, component, reason, message string) error
	DeletePod(ctx context.Context, p kube.Pod) error
}

// unattachedEvery is how often the node's pods are compared with the
// agent's; a pod is reported once per UID.
const unattachedEvery = 30 * time.Second

// ReasonNotAttached is the event's reason on a pod running without its
// sealmesh interface.
const ReasonNotAttached = "SealmeshNotAttached"

// unattached returns the running pods on this node that the chain should
// have attached and did not.
func (a *Agent) unattached(ctx context.Context) ([]kube.Pod, error) {
	running, err := a.cfg.Repair.RunningOn(ctx, a.cfg.NodeName)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	attached := map[string]bool{}
	for _, p := range a.pods {
		attached[p.req.PodNamespace+"/"+p.req.PodName] = true
	}
	a.mu.Unlock()
	var out []kube.Pod
	for _, p := range running {
		switch {
		case p.HostNetwork, p.Annotations[cniapi.AttachAnnotation] == "false",
			cniapi.Excluded(p.Namespace, a.cfg.ExcludeNamespaces), attached[p.Namespace+"/"+p.Name]:
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// checkUnattached reports (and with DeleteUnattached, deletes) the
// unattached pods; it runs every unattachedEvery from Run.
func (a *Agent) checkUnattached(ctx context.Context) {
	pods, err := a.unattached(ctx)
	if err != nil {
		a.cfg.Log.Warn("listing this node's pods for unattached ones", "err", err)
		return
	}
	a.metrics.unattached.Set(float64(len(pods)))
	seen := map[string]bool{}
	for _, p := range pods {
		seen[p.UID] = true
		if a.reported[p.UID] {
			continue
		}
		msg := "running without its sealmesh interface (it started before sealmesh-cni was chained on this node); delete it to attach it"
		if a.cfg.DeleteUnattached {
			msg = "running without its sealmesh interface (it started before sealmesh-cni was chained on this node); deleted so that it starts again attached"
		}
		a.cfg.Log.Warn("pod not attached", "pod", p.Namespace+"/"+p.Name, "uid", p.UID, "delete", a.cfg.DeleteUnattached)
		if err := a.cfg.Repair.Event(ctx, p, "sealmesh-agent", ReasonNotAttached, msg); err != nil {
			a.cfg.Log.Warn("event on an unattached pod", "pod", p.Namespace+"/"+p.Name, "err", err)
			continue // reported next round
		}
		if a.cfg.DeleteUnattached {
			if err := a.cfg.Repair.DeletePod(ctx, p); err != nil {
				a.cfg.Log.Warn("deleting an unattached pod", "pod", p.Namespace+"/"+p.Name, "err", err)
				continue
			}
			a.metrics.repaired.Inc()
		}
		a.reported[p.UID] = true
	}
	for uid := range a.reported {
		if !seen[uid] {
			delete(a.reported, uid)
		}
	}
}
