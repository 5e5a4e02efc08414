package coordinator

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sealmesh/sealmesh/internal/buildmetric"
)

// metrics are the coordinator's Prometheus metrics, served on the plain
// health port (Metrics): counts and timings only, nothing about who enrolled.
// Every gauge reads the current view: a scrape never waits on a transition.
type metrics struct {
	reg *prometheus.Registry
}

func (c *Coordinator) initMetrics() {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(c.enrol.Collectors()...)
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealmesh_coordinator_ready", Help: "1 while the coordinator serves enrolments."}, func() float64 {
			if c.Ready() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealmesh_coordinator_freshness_confirmed", Help: "0 while no attested peer or owner has confirmed, since a restart from sealed state, that the history served is the newest."}, func() float64 {
			if c.view().unconfirmed {
				return 0
			}
			return 1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealmesh_coordinator_manifest_generation", Help: "Generation of the manifest served (0: none)."}, func() float64 {
			if h := c.view().hist; h != nil {
				return float64(h.Generation())
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealmesh_coordinator_hosts", Help: "Live certificates (leases) this coordinator knows of."}, func() float64 {
			if alloc := c.view().alloc; alloc != nil {
				return float64(len(alloc.Live(c.now())))
			}
			return 0
		}),
		buildmetric.Collector("coordinator", c.cfg.Version),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	c.metrics = m
}

// Metrics serves the coordinator's metrics.
func (c *Coordinator) Metrics() http.Handler {
	return promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
