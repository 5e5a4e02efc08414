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
	"github.com/slackhq/nebula/cert"
	"google.golang.org/protobuf/proto"

	"github.com/sealmesh/sealmesh/agent/cniapi"
	"github.com/sealmesh/sealmesh/internal/buildmetric"
)

// metrics are the agent's own.
type metrics struct {
	reg        *prometheus.Registry
	enrolments *prometheus.CounterVec
	renewals   *prometheus.CounterVec
	skipped    *prometheus.CounterVec
	unattached prometheus.Gauge
	repaired   prometheus.Counter
	addStages  *prometheus.HistogramVec
}

// addStages are the stages of a pod's ADD, timed in
// sealmesh_agent_add_stage_seconds: the agent's own (identity, the pod's
// MTU, the tunnel, the record on disk) around the enrolment's
// (agent/enrol.Trace), three parts of the tunnel stage as its tunnel
// process timed them (prepare: the pod's namespace opened, its underlay
// addresses read, the configuration loaded; nebula: Nebula's start with the
// TUN device and UDP socket made; interface: the pod's interface configured
// and up), and the whole.
var addStages = []string{"identity", "mtu", "key", "nonce", "evidence", "enrol", "tunnel", "prepare", "nebula", "interface", "record", "total"}

func (a *Agent) initMetrics() {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.enrolments = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealmesh_agent_enrolments_total", Help: "Pod attachments (enrolment and tunnel start), by result.",
	}, []string{"result"})
	m.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealmesh_agent_renewals_total", Help: "Certificate renewals and manifest updates of running pods, by result.",
	}, []string{"result"})
	m.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealmesh_agent_pods_skipped_total", Help: "Pods passed through without a Nebula interface, by reason (namespace-excluded, annotation, host-network).",
	}, []string{"reason"})
	m.unattached = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sealmesh_agent_unattached_pods", Help: "Running pods on this node that the chain should have attached and did not (started before sealmesh-cni was chained).",
	})
	m.repaired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sealmesh_agent_unattached_pods_deleted_total", Help: "Unattached pods deleted so that they start again attached (--delete-unattached-pods).",
	})
	m.addStages = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sealmesh_agent_add_stage_seconds",
		Help: "Time each stage of attaching a pod took (identity, mtu, key, nonce, evidence, enrol, tunnel with its parts prepare, nebula and interface, record, and the total).",
		// 0.25 ms to 4 s.
		Buckets: prometheus.ExponentialBuckets(0.00025, 2, 15),
	}, []string{"stage"})
	for _, st := range addStages {
		m.addStages.WithLabelValues(st)
	}
	// Every label value is exported from the start (at 0), so that rates
	// and alerts on one see it before its first occurrence.
	for _, r := range []string{"ok", "error"} {
		m.enrolments.WithLabelValues(r)
		m.renewals.WithLabelValues(r)
	}
	for r := range skipReasons {
		m.skipped.WithLabelValues(r)
	}
	m.reg.MustRegister(m.enrolments, m.renewals, m.skipped, m.unattached, m.repaired, m.addStages,
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
		buildmetric.Collector("agent", a.cfg.Version), certExpiry{a},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	a.metrics = m
}

// certExpiry is each attached pod's certificate's end, read from the
// certificate the pod's tunnel runs with at scrape time.
type certExpiry struct{ a *Agent }

var certExpiryDesc = prometheus.NewDesc("sealmesh_agent_pod_certificate_expiry_timestamp_seconds",
	"When each attached pod's Nebula certificate expires (Unix seconds); renewed two thirds of the way.",
	[]string{"namespace", "pod", "container_id"}, nil)

func (certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- certExpiryDesc }

func (e certExpiry) Collect(ch chan<- prometheus.Metric) {
	e.a.mu.Lock()
	type one struct {
		req cniapi.Request
		pem string
	}
	all := make([]one, 0, len(e.a.pods))
	for _, p := range e.a.pods {
		all = append(all, one{p.req, p.certificate})
	}
	e.a.mu.Unlock()
	for _, p := range all {
		c, _, err := cert.UnmarshalCertificateFromPEM([]byte(p.pem))
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, float64(c.NotAfter().Unix()),
			p.req.PodNamespace, p.req.PodName, p.req.ContainerID)
	}
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Metrics serves the agent's metrics and Nebula's, gathered from the tunnel
// processes' control sockets at scrape time: Nebula's own counters and
// histograms per tunnel process (labelled tunnel; Nebula keeps them
// process-wide), and each pod's number of Nebula tunnels (labelled with the
// pod).
func (a *Agent) Metrics() http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{a.metrics.reg, prometheus.GathererFunc(a.gatherTunnels)},
		promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// gatherTunnels reads each tunnel process's Nebula metrics and instances.
func (a *Agent) gatherTunnels() ([]*dto.MetricFamily, error) {
	ids := a.cfg.Tunnels.Hosts()
	a.mu.Lock()
	byInstance := map[string]cniapi.Request{}
	for _, p := range a.pods {
		byInstance[p.host+"/"+p.instance] = p.req
	}
	a.mu.Unlock()

	families := map[string]*dto.MetricFamily{}
	podTunnels := &dto.MetricFamily{
		Name: proto.String("sealmesh_agent_pod_nebula_tunnels"),
		Help: proto.String("Nebula tunnels (peers with a tunnel) of each pod's instance."),
		Type: dto.MetricType_GAUGE.Enum(),
	}
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		list, err := a.cfg.Tunnels.Instances(ctx, id)
		if err == nil {
			for _, in := range list {
				r, ok := byInstance[id+"/"+in.ID]
				if !ok {
					continue
				}
				podTunnels.Metric = append(podTunnels.Metric, &dto.Metric{
					Label: []*dto.LabelPair{
						// kube-state-metrics' names, so joins need no relabelling.
						{Name: proto.String("container_id"), Value: proto.String(r.ContainerID)},
						{Name: proto.String("namespace"), Value: proto.String(r.PodNamespace)},
						{Name: proto.String("pod"), Value: proto.String(r.PodName)},
					},
					Gauge: &dto.Gauge{Value: proto.Float64(float64(in.Tunnels))},
				})
			}
		}
		body, err := a.cfg.Tunnels.Metrics(ctx, id)
		if err != nil {
			cancel()
			a.cfg.Log.Debug("tunnel metrics", "tunnel", id, "err", err)
			continue
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		got, err := parser.TextToMetricFamilies(body)
		body.Close()
		cancel()
		if err != nil {
			a.cfg.Log.Debug("tunnel metrics", "tunnel", id, "err", err)
			continue
		}
		label := &dto.LabelPair{Name: proto.String("tunnel"), Value: proto.String(id)}
		for name, f := range got {
			for _, m := range f.Metric {
				m.Label = append(m.Label, label)
			}
			if have, ok := families[name]; ok {
				have.Metric = append(have.Metric, f.Metric...)
			} else {
				families[name] = f
			}
		}
	}
	out := make([]*dto.MetricFamily, 0, len(families)+1)
	for _, f := range families {
		out = append(out, f)
	}
	if len(podTunnels.Metric) > 0 {
		out = append(out, podTunnels)
	}
	slices.SortFunc(out, func(x, y *dto.MetricFamily) int { return strings.Compare(x.GetName(), y.GetName()) })
	return out, nil
}
