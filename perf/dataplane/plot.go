package dataplane

import (
	"fmt"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plot draws throughput against frame size per scenario and latency
// percentiles against load, and returns the files written (relative to
// dir).
func (run *Run) plot(dir string) ([]string, error) {
	var files []string
	byScenario := map[string][]Result{}
	var names []string
	for _, r := range run.Results {
		if r.Error != "" {
			continue
		}
		if _, ok := byScenario[r.Scenario]; !ok {
			names = append(names, r.Scenario)
		}
		byScenario[r.Scenario] = append(byScenario[r.Scenario], r)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, nil
	}

	tp := plot.New()
	tp.Title.Text = "NDR throughput vs frame size (IMIX at its mean size)"
	tp.X.Label.Text = "frame size, bytes"
	tp.Y.Label.Text = "NDR, Mpps"
	var lines []any
	for _, n := range names {
		rs := append([]Result(nil), byScenario[n]...)
		sort.Slice(rs, func(i, j int) bool { return rs[i].MeanSize < rs[j].MeanSize })
		xy := make(plotter.XYs, len(rs))
		for i, r := range rs {
			xy[i] = plotter.XY{X: r.MeanSize, Y: r.NDR / 1e6}
		}
		lines = append(lines, n, xy)
	}
	if err := plotutil.AddLinePoints(tp, lines...); err != nil {
		return nil, err
	}
	tp.Legend.Top = true
	if err := tp.Save(18*vg.Centimeter, 11*vg.Centimeter, filepath.Join(dir, "throughput.png")); err != nil {
		return nil, err
	}
	files = append(files, "throughput.png")

	for _, q := range []struct {
		name string
		get  func(Latency) float64
	}{{"p50", func(l Latency) float64 { return l.P50Us }}, {"p99", func(l Latency) float64 { return l.P99Us }}} {
		lp := plot.New()
		lp.Title.Text = fmt.Sprintf("latency %s vs load (64 B)", q.name)
		lp.X.Label.Text = "offered load, % of NDR"
		lp.Y.Label.Text = q.name + " latency, µs"
		var ls []any
		for _, n := range names {
			for _, r := range byScenario[n] {
				if r.Profile != "64" {
					continue
				}
				byGen := map[string]plotter.XYs{}
				var gens []string
				for _, l := range r.Latency {
					if _, ok := byGen[l.Generator]; !ok {
						gens = append(gens, l.Generator)
					}
					byGen[l.Generator] = append(byGen[l.Generator], plotter.XY{X: float64(l.Percent), Y: q.get(l.Latency)})
				}
				for _, g := range gens {
					ls = append(ls, n+" ("+g+")", byGen[g])
				}
			}
		}
		if len(ls) == 0 {
			continue
		}
		if err := plotutil.AddLinePoints(lp, ls...); err != nil {
			return nil, err
		}
		lp.Legend.Top = true
		f := "latency_" + q.name + ".png"
		if err := lp.Save(18*vg.Centimeter, 11*vg.Centimeter, filepath.Join(dir, f)); err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}
