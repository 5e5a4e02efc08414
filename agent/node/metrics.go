package node

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/agent/tunnel"
)

// metrics are the agent's own.
type metrics struct {
	reg        *prometheus.Registry
	enrolments *prometheus.CounterVec
	renewals   *prometheus.CounterVec
}

func (a *Agent) initMetrics() {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.enrolments = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealmesh_agent_enrolments_total", Help: "Pod attachments (enrolment and tunnel start), by result.",
	}, []string{"result"})
	m.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealmesh_agent_renewals_total", Help: "Certificate renewals and manifest updates of running pods, by result.",
	}, []string{"result"})
	m.reg.MustRegister(m.enrolments, m.renewals,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealmesh_agent_pods", Help: "Pods attached on this node."}, func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			return float64(len(a.pods))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sealmesh_agent_coordinator_contact_age_seconds", Help: "Seconds since a ready coordinator last answered (-1: never).",
		}, func() float64 {
			c := a.contact.Load()
			if c == 0 {
				return -1
			}
			return time.Since(time.Unix(0, c)).Seconds()
		}),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	a.metrics = m
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Metrics serves the agent's metrics and every pod's Nebula metrics (labelled
// with the pod), gathered from the tunnels' control sockets at scrape time.
func (a *Agent) Metrics() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{a.metrics.reg, prometheus.GathererFunc(a.gatherPods)},
		promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// gatherPods reads each pod's Nebula metrics and labels them with the pod.
func (a *Agent) gatherPods() ([]*dto.MetricFamily, error) {
	a.mu.Lock()
	reqs := make([]*cniapi.Request, 0, len(a.pods))
	for _, p := range a.pods {
		r := p.req
		reqs = append(reqs, &r)
	}
	a.mu.Unlock()
	families := map[string]*dto.MetricFamily{}
	for _, r := range reqs {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		body, err := tunnel.Metrics(ctx, a.control(r))
		if err != nil {
			cancel()
			a.cfg.Log.Debug("pod metrics", "container", r.ContainerID, "err", err)
			continue
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		got, err := parser.TextToMetricFamilies(body)
		body.Close()
		cancel()
		if err != nil {
			a.cfg.Log.Debug("pod metrics", "container", r.ContainerID, "err", err)
			continue
		}
		labels := []*dto.LabelPair{
			{Name: proto.String("pod_namespace"), Value: proto.String(r.PodNamespace)},
			{Name: proto.String("pod_name"), Value: proto.String(r.PodName)},
			{Name: proto.String("container"), Value: proto.String(r.ContainerID)},
		}
		for name, f := range got {
			for _, m := range f.Metric {
				m.Label = append(m.Label, labels...)
			}
			if have, ok := families[name]; ok {
				have.Metric = append(have.Metric, f.Metric...)
			} else {
				families[name] = f
			}
		}
	}
	out := make([]*dto.MetricFamily, 0, len(families))
	for _, f := range families {
		out = append(out, f)
	}
	slices.SortFunc(out, func(x, y *dto.MetricFamily) int { return strings.Compare(x.GetName(), y.GetName()) })
	return out, nil
}
