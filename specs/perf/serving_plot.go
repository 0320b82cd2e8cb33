package perf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// plotServingCDF draws, for each preset, the CDF of the fetch and backup
// batch latencies of each interface into serving-cdf-<preset>.png in dir,
// and returns the paths it wrote, comma-separated.
func plotServingCDF(dir string, all [][]*servingResult) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("perf: plot: %w", err)
	}
	var paths []string
	var errs []error
	for _, runs := range all {
		if len(runs) == 0 {
			continue
		}
		pl := runs[0].pl
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Serving %s: latency of each batch call (up to 128 pages)", pl.p.label())
		p.X.Label.Text = "latency (ms, log scale)"
		p.Y.Label.Text = "fraction of calls"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = 0, 1
		p.Legend.Top = false
		p.Legend.Left = false
		var lines []any
		for _, kind := range []callKind{fetchCall, backupCall} {
			for _, r := range runs {
				pts := cdfPoints(&r.calls[kind])
				if len(pts) == 0 {
					continue
				}
				what := "fetch"
				if kind == backupCall {
					what = "backup"
				}
				lines = append(lines, fmt.Sprintf("%s %s (%s)", what, r.iface, callName(kind, r.iface)), pts)
			}
		}
		if len(lines) == 0 {
			continue
		}
		if err := plotutil.AddLines(p, lines...); err != nil {
			errs = append(errs, fmt.Errorf("perf: plot %s: %w", pl.p.name, err))
			continue
		}
		path := filepath.Join(dir, fmt.Sprintf("serving-cdf-%s.png", pl.p.name))
		if err := p.Save(7*vg.Inch, 4.5*vg.Inch, path); err != nil {
			errs = append(errs, fmt.Errorf("perf: plot %s: %w", pl.p.name, err))
			continue
		}
		paths = append(paths, path)
	}
	return strings.Join(paths, ", "), errors.Join(errs...)
}

// cdfPoints is the empirical CDF of c's latencies in milliseconds: for the
// i-th fastest of n calls, (latency, i/n).
func cdfPoints(c *callStats) plotter.XYs {
	s := slices.Sorted(slices.Values(c.lat))
	pts := make(plotter.XYs, len(s))
	for i, d := range s {
		pts[i].X = max(ms(d), 1e-3) // the log scale needs x > 0
		pts[i].Y = float64(i+1) / float64(len(s))
	}
	return pts
}
