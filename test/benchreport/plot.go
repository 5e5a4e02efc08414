package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// bars draws, for one benchmark and metric, the median of each
// sub-benchmark as a bar with its min–max as an error bar, into dir; it
// returns the file name.
func bars(dir, bench, unit string, subs []string, values map[string][]float64) (string, error) {
	p := plot.New()
	p.Title.Text = strings.TrimPrefix(bench, "Benchmark") + ": " + unit + " (median, min–max)"
	p.Y.Label.Text = unit
	p.Y.Min = 0
	med := make(plotter.Values, len(subs))
	errs := make(plotter.YErrors, len(subs))
	for i, s := range subs {
		v := slices.Sorted(slices.Values(values[s]))
		med[i] = median(v)
		errs[i].Low, errs[i].High = med[i]-v[0], v[len(v)-1]-med[i]
	}
	w := vg.Points(min(40, 360/float64(len(subs))))
	bc, err := plotter.NewBarChart(med, w)
	if err != nil {
		return "", err
	}
	bc.Color = color.RGBA{R: 60, G: 110, B: 180, A: 255}
	bc.LineStyle.Width = 0
	p.Add(bc)
	pts := make(plotter.XYs, len(subs))
	for i := range pts {
		pts[i].X, pts[i].Y = float64(i), med[i]
	}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYs
		plotter.YErrors
	}{pts, errs})
	if err != nil {
		return "", err
	}
	p.Add(eb)
	p.NominalX(subs...)
	if len(subs) > 4 {
		p.X.Tick.Label.Rotation = 0.5
		p.X.Tick.Label.XAlign = -0.8
	}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(strings.TrimPrefix(bench, "Benchmark")+"-"+unit) + ".png"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := p.Save(7*vg.Inch, 4*vg.Inch, filepath.Join(dir, name)); err != nil {
		return "", fmt.Errorf("plot %s: %w", name, err)
	}
	return name, nil
}
