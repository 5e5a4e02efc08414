package ha

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// stages are the coordinators' enrolment stage histograms
// (sealmesh_coordinator_enrolment_stage_seconds) summed over coordinators:
// per stage, the cumulative count at each bucket's upper bound (seconds).
type stages map[string]map[float64]float64

// stages reads the histograms of the first n coordinators.
func (l *lab) stages(b testing.TB, n int) stages {
	c := l.plainHTTP()
	out := stages{}
	for i := range n {
		resp, err := c.Get("http://" + ip(i) + ":7081/metrics")
		if err != nil {
			b.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatalf("c%d metrics: %v", i+1, err)
		}
		fam := fams["sealmesh_coordinator_enrolment_stage_seconds"]
		if fam == nil {
			b.Fatalf("c%d serves no sealmesh_coordinator_enrolment_stage_seconds", i+1)
		}
		for _, m := range fam.GetMetric() {
			var stage string
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "stage" {
					stage = lp.GetValue()
				}
			}
			if out[stage] == nil {
				out[stage] = map[float64]float64{}
			}
			h := m.GetHistogram()
			for _, bk := range h.GetBucket() {
				if !math.IsInf(bk.GetUpperBound(), 1) {
					out[stage][bk.GetUpperBound()] += float64(bk.GetCumulativeCount())
				}
			}
			out[stage][math.Inf(1)] += float64(h.GetSampleCount())
		}
	}
	return out
}

// quantile is the q-quantile of a stage's observations between s and later,
// interpolated linearly inside its bucket (as Prometheus' histogram_quantile),
// in milliseconds.
func (s stages) quantile(later stages, stage string, q float64) float64 {
	var bounds []float64
	for ub := range later[stage] {
		bounds = append(bounds, ub)
	}
	slices.Sort(bounds)
	if len(bounds) == 0 {
		panic(fmt.Sprintf("no %s stage in the coordinators' metrics", stage))
	}
	count := func(ub float64) float64 { return later[stage][ub] - s[stage][ub] }
	rank := q * count(bounds[len(bounds)-1])
	lower, below := 0.0, 0.0
	for _, ub := range bounds {
		if c := count(ub); c >= rank {
			if math.IsInf(ub, 1) {
				return 1000 * lower
			}
			return 1000 * (lower + (ub-lower)*(rank-below)/math.Max(c-below, 1))
		}
		lower, below = ub, count(ub)
	}
	return 1000 * lower
}

func TestStageQuantile(t *testing.T) {
	inf := math.Inf(1)
	before := stages{"record": {0.001: 10, 0.002: 10, 0.005: 10, 0.01: 10, inf: 10}}
	after := stages{"record": {0.001: 10, 0.002: 60, 0.005: 109, 0.01: 110, inf: 110}}
	for _, tc := range []struct {
		q    float64
		want float64
	}{
		{0.5, 2},     // the 50th of 100 new observations: the top of the 1-2 ms bucket
		{0.25, 1.5},  // halfway into it
		{0.99, 5},    // the 99th: the top of 2-5 ms
		{0.995, 7.5}, // halfway into 5-10 ms
		{1, 10},
	} {
		if got := before.quantile(after, "record", tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("q%v = %v ms, want %v", tc.q, got, tc.want)
		}
	}
	// Observations above the last finite bound are reported at that bound.
	above := stages{"record": {0.001: 10, 0.002: 60, 0.005: 109, 0.01: 110, inf: 120}}
	if got := before.quantile(above, "record", 0.99); got != 10 {
		t.Errorf("q0.99 with a tenth above every bound = %v ms, want 10", got)
	}
}
