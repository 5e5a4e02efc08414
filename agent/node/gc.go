package node

import (
	"context"
	"slices"

	"github.com/sealmesh/sealmesh/agent/cniapi"
)

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
		a.stop(p)
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
