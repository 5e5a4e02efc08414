package node

import (
	"context"
	"fmt"
	"time"

	"github.com/slackhq/nebula/cert"

	"github.com/sealmesh/sealmesh/agent/enrol"
	"github.com/sealmesh/sealmesh/agent/nebulaconfig"
	"github.com/sealmesh/sealmesh/agent/tunnel"
	"github.com/sealmesh/sealmesh/internal/retry"
)

// Run keeps the pods' certificates fresh until ctx ends: each is renewed, with
// fresh evidence for the same key, once two thirds of its lifetime have
// passed, and every pod whose rules come from another manifest than the
// current one (the follower's) is renewed, so new firewall rules,
// lighthouses and revocations reach running tunnels. Renewal reloads the
// tunnel's configuration: its tunnels stay up. A pod whose tunnel stopped is
// attached anew.
func (a *Agent) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	if f := a.cfg.Follower; f != nil {
		go f.Run(ctx)
	}
	// Unattached pods are looked for once the node's pods had a round to
	// be taken up, then every unattachedEvery.
	repair := make(<-chan time.Time)
	if a.cfg.Repair != nil {
		t := time.NewTicker(unattachedEvery)
		defer t.Stop()
		repair = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			a.tend(ctx)
		case <-repair:
			a.checkUnattached(ctx)
		}
	}
}

// tend is one round of Run.
func (a *Agent) tend(ctx context.Context) {
	var head string
	if a.cfg.Follower != nil {
		head = a.cfg.Follower.Head()
	}
	for _, p := range a.dead(ctx) {
		a.reattach(ctx, &p.req, p.fingerprint, p.releaseToken, p.ip, p.result.Address)
	}
	a.mu.Lock()
	var due []*pod
	now := a.cfg.Now()
	for _, p := range a.pods {
		// A pod whose rules come from another manifest than the current
		// one, or whose certificate is two thirds through.
		stale := head != "" && p.head != "" && p.head != head
		if now.After(p.retry) && (stale || now.After(p.renewAt)) {
			due = append(due, p)
		}
	}
	a.mu.Unlock()
	for _, p := range due {
		err := a.renew(ctx, p)
		a.metrics.renewals.WithLabelValues(result(err)).Inc()
		a.mu.Lock()
		if p.fails == nil {
			p.fails = retry.New(a.cfg.Log, "renewal", retry.DefaultBackoff)
		}
		fails := p.fails
		a.mu.Unlock()
		if err == nil {
			fails.Succeeded("container", p.req.ContainerID)
			continue
		}
		// Backing off, one warning per kind of failure: a coordinator
		// outage is not a line every few seconds for every pod.
		wait := fails.Failed(err, "container", p.req.ContainerID)
		a.mu.Lock()
		p.retry = a.cfg.Now().Add(wait)
		a.mu.Unlock()
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
	// A pod annotated after it started keeps its interface until it stops.
	w, _, err := a.workload(ctx, &r)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The pod's key is in its tunnel process, which proves possession of
	// it; the agent never keeps it.
	podKey := enrol.Key{Public: c.PublicKey(), Prove: func(possessionKey, nonce []byte) ([]byte, error) {
		return a.cfg.Tunnels.Prove(rctx, host, instance, &tunnel.ProveRequest{PossessionKey: possessionKey, Nonce: nonce})
	}}
	e, err := a.cfg.Retry.Renew(rctx, a.cfg.Coordinator, a.cfg.Issuer, w, podKey)
	if err != nil {
		return err
	}
	a.touch()
	if e.IP != p.result.Address {
		return fmt.Errorf("the renewed certificate carries %s, the tunnel %s", e.IP, p.result.Address)
	}
	cfg := nebulaconfig.Config(e, nil, nebulaconfig.Options{Device: r.IfName, MTU: p.result.MTU})
	if err := a.cfg.Tunnels.Update(rctx, host, instance, cfg); err != nil {
		return err
	}
	nc, _, err := cert.UnmarshalCertificateFromPEM([]byte(e.Certificate))
	if err != nil {
		return err
	}
	fp, _ := nc.Fingerprint()
	a.mu.Lock()
	p.certificate, p.fingerprint, p.releaseToken, p.retry, p.renewAt, p.head = e.Certificate, fp, e.ReleaseToken, time.Time{}, enrol.RenewAt(a.cfg.Now(), e.NotAfter), e.Head
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
	alive := map[string]bool{}
	listed := map[string]map[string]bool{}
	for _, p := range pods {
		if _, ok := alive[p.host]; ok {
			continue
		}
		if alive[p.host] = a.cfg.Tunnels.Alive(p.host); !alive[p.host] {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := a.cfg.Tunnels.Instances(lctx, p.host)
		cancel()
		if err != nil {
			// Alive but not answering (busy): not taken for dead.
			a.cfg.Log.Warn("tunnel process does not answer", "tunnel", p.host, "err", err)
			continue
		}
		listed[p.host] = instanceSet(list)
	}
	var dead []*pod
	a.mu.Lock()
	for _, p := range pods {
		l, looked := listed[p.host]
		gone := !alive[p.host] || (looked && !l[p.instance])
		if gone && a.pods[key(&p.req)] == p {
			delete(a.pods, key(&p.req))
			dead = append(dead, p)
		}
	}
	a.mu.Unlock()
	for _, p := range dead {
		a.cfg.Tunnels.Drop(p.host)
	}
	return dead
}
