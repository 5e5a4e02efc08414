package coordinator

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the coordinator's Prometheus metrics, served on the plain
// health port (Metrics): counts and timings only, nothing about who enrolled.
type metrics struct {
	reg        *prometheus.Registry
	enrolments *prometheus.CounterVec
	latency    prometheus.Histogram
	stages     *prometheus.HistogramVec
}

func (c *Coordinator) initMetrics() {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.enrolments = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealmesh_coordinator_enrolments_total",
		Help: "Enrolment requests, by result: issued, refused (evidence or request not accepted), unavailable (not ready, retry elsewhere) or error.",
	}, []string{"result"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sealmesh_coordinator_enrolment_seconds",
		Help:    "Time to answer an enrolment that issued a certificate (verification, address, signing, store).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	// Where an enrolment's time goes, so a slow answer can be put down to
	// the evidence's check or the store's write without a profiler. Finer
	// buckets than the total's around 1-30 ms, where both usually are.
	m.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sealmesh_coordinator_enrolment_stage_seconds",
		Help: "Time in one stage of an enrolment: verify (the evidence's signature, certificate chain and the manifest's policy, or a join token) " +
			"or record (an address chosen, the certificate signed and its lease written to the store).",
		Buckets: []float64{.00025, .0005, .001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .075, .1, .25, .5, 1},
	}, []string{"stage"})
	m.reg.MustRegister(m.enrolments, m.latency, m.stages,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealmesh_coordinator_ready", Help: "1 while the coordinator serves enrolments."}, func() float64 {
			if c.Ready() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealmesh_coordinator_manifest_generation", Help: "Generation of the manifest served (0: none)."}, func() float64 {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.hist == nil {
				return 0
			}
			return float64(c.hist.Generation())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sealmesh_coordinator_hosts", Help: "Live certificates (leases) this coordinator knows of."}, func() float64 {
			c.mu.Lock()
			alloc := c.alloc
			c.mu.Unlock()
			if alloc == nil {
				return 0
			}
			return float64(len(alloc.Live(c.now())))
		}),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	c.metrics = m
}

// observe counts one enrolment's outcome.
func (c *Coordinator) observe(start time.Time, err error) {
	switch {
	case err == nil:
		c.metrics.enrolments.WithLabelValues("issued").Inc()
		c.metrics.latency.Observe(time.Since(start).Seconds())
	case errors.Is(err, ErrRefused), errors.Is(err, ErrBadInput):
		c.metrics.enrolments.WithLabelValues("refused").Inc()
	case errors.Is(err, ErrNotReady):
		c.metrics.enrolments.WithLabelValues("unavailable").Inc()
	default:
		c.metrics.enrolments.WithLabelValues("error").Inc()
	}
}

// timed records the time since start in an enrolment's stage.
func (c *Coordinator) timed(stage string, start time.Time) {
	c.metrics.stages.WithLabelValues(stage).Observe(time.Since(start).Seconds())
}

// Metrics serves the coordinator's metrics.
func (c *Coordinator) Metrics() http.Handler {
	return promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
