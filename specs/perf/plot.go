package perf

import (
	"fmt"
	"image/color"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Charts are drawn with gonum.org/v1/plot: each figure is written as a PNG
// (144 dpi) and an SVG of the same name, and its paths are returned so the
// report can list them.

// chartDPI is the PNG resolution: 144 dpi keeps 10-point labels sharp.
const chartDPI = 144

// sideColors are the colours of the sides, the same in every chart.
var sideColors = map[string]color.Color{
	"old":   color.RGBA{R: 0xd9, G: 0x5f, B: 0x02, A: 0xff},
	"new":   color.RGBA{R: 0x1b, G: 0x9e, B: 0x77, A: 0xff},
	"floor": color.RGBA{R: 0x75, G: 0x70, B: 0xb3, A: 0xff},
	"write": color.RGBA{R: 0xd9, G: 0x5f, B: 0x02, A: 0xff},
	"read":  color.RGBA{R: 0x1b, G: 0x9e, B: 0x77, A: 0xff},
}

// seriesColor is name's colour: a fixed one for the sides, else one of a
// palette by position.
func seriesColor(name string, i int) color.Color {
	if c, ok := sideColors[name]; ok {
		return c
	}
	palette := []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
		color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
		color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	}
	return palette[i%len(palette)]
}

// saveFigure draws plots side by side, in equal columns, into base+".png"
// and base+".svg", w by h in all, and returns the two paths.
func saveFigure(base string, w, h vg.Length, plots ...*plot.Plot) ([]string, error) {
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return nil, fmt.Errorf("perf: charts: %w", err)
	}
	const pad = vg.Length(8) // points around and between the plots
	render := func(c vg.CanvasWriterTo, path string) error {
		dc := draw.New(c)
		col := (w - pad) / vg.Length(len(plots))
		for i, p := range plots {
			left := vg.Length(i)*col + pad
			p.Draw(draw.Crop(dc, left, left+col-pad-w, pad, -pad))
		}
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("perf: charts: %w", err)
		}
		if _, err := c.WriteTo(f); err != nil {
			_ = f.Close()
			return fmt.Errorf("perf: charts: write %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("perf: charts: %w", err)
		}
		return nil
	}
	pngPath, svgPath := base+".png", base+".svg"
	png := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(chartDPI))}
	if err := render(png, pngPath); err != nil {
		return nil, err
	}
	if err := render(vgsvg.New(w, h), svgPath); err != nil {
		return nil, err
	}
	return []string{pngPath, svgPath}, nil
}

// newPlot is a plot with a title, axis labels and the legend at the top left.
func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.Padding = vg.Points(6)
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.ThumbnailWidth = vg.Points(12)
	p.Add(plotter.NewGrid())
	return p
}

// span is a middle value and the range around it, for one bar or point.
type span struct{ mid, lo, hi float64 }

// groupSeries is one series of a grouped chart: its value in each group (at
// x = 0, 1, ...), drawn as bars or points with a whisker from lo to hi,
// side by side with the other series of the group.
type groupSeries struct {
	name  string
	spans []span
	index int  // position within a group
	count int  // series per group
	bars  bool // bars from the bottom of the axis, else points
	color color.Color
}

// groupWidth is the share of a group's unit of x that its series fill.
const groupWidth = 0.8

// x returns the left edge, centre and right edge of group i's item.
func (s *groupSeries) x(i int) (left, mid, right float64) {
	w := groupWidth / float64(s.count)
	left = float64(i) - groupWidth/2 + float64(s.index)*w
	return left + 0.08*w, left + w/2, left + 0.92*w
}

// Plot implements plot.Plotter.
func (s *groupSeries) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	line := draw.LineStyle{Color: color.Black, Width: vg.Points(1)}
	for i, v := range s.spans {
		if math.IsNaN(v.mid) {
			continue
		}
		left, mid, right := s.x(i)
		if s.bars {
			bottom := trY(math.Max(p.Y.Min, 0))
			rect := c.ClipPolygonY([]vg.Point{{X: trX(left), Y: bottom}, {X: trX(right), Y: bottom},
				{X: trX(right), Y: trY(v.mid)}, {X: trX(left), Y: trY(v.mid)}})
			c.FillPolygon(s.color, rect)
		} else {
			c.DrawGlyph(draw.GlyphStyle{Color: s.color, Radius: vg.Points(4), Shape: draw.CircleGlyph{}},
				vg.Point{X: trX(mid), Y: trY(v.mid)})
		}
		capW := (trX(right) - trX(left)) / 4
		x := trX(mid)
		lo, hi := trY(v.lo), trY(v.hi)
		c.StrokeLines(line, c.ClipLinesY([]vg.Point{{X: x, Y: lo}, {X: x, Y: hi}})...)
		for _, y := range []vg.Length{lo, hi} {
			c.StrokeLines(line, c.ClipLinesY([]vg.Point{{X: x - capW, Y: y}, {X: x + capW, Y: y}})...)
		}
	}
}

// DataRange implements plot.DataRanger: every group, and every whisker.
func (s *groupSeries) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = -0.5, float64(len(s.spans))-0.5
	ymin, ymax = math.Inf(1), math.Inf(-1)
	if s.bars {
		ymin = 0
	}
	for _, v := range s.spans {
		if !math.IsNaN(v.mid) {
			ymin, ymax = math.Min(ymin, v.lo), math.Max(ymax, v.hi)
		}
	}
	return xmin, xmax, ymin, ymax
}

// Thumbnail implements plot.Thumbnailer, for the legend.
func (s *groupSeries) Thumbnail(c *draw.Canvas) {
	if s.bars {
		c.FillPolygon(s.color, []vg.Point{{X: c.Min.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Min.Y},
			{X: c.Max.X, Y: c.Max.Y}, {X: c.Min.X, Y: c.Max.Y}})
		return
	}
	c.DrawGlyph(draw.GlyphStyle{Color: s.color, Radius: vg.Points(4), Shape: draw.CircleGlyph{}}, c.Center())
}

// addGroups adds one series per name, in that order, to p, with the groups
// named along x.
func addGroups(p *plot.Plot, groups []string, names []string, spans map[string][]span, bars bool) {
	p.NominalX(groups...)
	for i, name := range names {
		s := &groupSeries{name: name, spans: spans[name], index: i, count: len(names), bars: bars, color: seriesColor(name, i)}
		p.Add(s)
		p.Legend.Add(name, s)
	}
}

// rateUnit picks the unit in which max bytes per second reads best.
func rateUnit(max float64) (string, float64) {
	switch {
	case max >= 1<<30:
		return "GiB/s", 1 << 30
	case max >= 1<<20:
		return "MiB/s", 1 << 20
	}
	return "KiB/s", 1 << 10
}

// ratioTicks labels a log axis of ratios at powers of two, 1x among them,
// every second or fourth one when the range is wide, and at 1.5 times each
// when it is narrow: at most about ten labels.
func ratioTicks(lo, hi float64) []plot.Tick {
	octaves := math.Log2(hi / lo)
	step := math.Max(1, math.Ceil(octaves/9))
	mults := []float64{1}
	if octaves < 4 {
		mults = []float64{1, 1.5}
	}
	var ticks []plot.Tick
	for e := step * math.Floor(math.Log2(lo)/step); e <= math.Ceil(math.Log2(hi)); e += step {
		for _, m := range mults {
			if v := m * math.Exp2(e); v >= lo && v <= hi {
				ticks = append(ticks, plot.Tick{Value: v, Label: strconvFormat(v) + "x"})
			}
		}
	}
	return ticks
}

// plainTicks are gonum's default ticks, labelled without trailing zeros
// (250, not 250.00).
func plainTicks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i, t := range ticks {
		if t.Label != "" {
			ticks[i].Label = strconvFormat(t.Value)
		}
	}
	return ticks
}

// logTicks125 labels a log axis at 1, 2 and 5 times each power of ten.
func logTicks125(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			if v := m * math.Pow(10, e); v >= lo && v <= hi {
				ticks = append(ticks, plot.Tick{Value: v, Label: strconvFormat(v)})
			}
		}
	}
	return ticks
}

// strconvFormat prints v with no trailing zeros: 0.002, 0.5, 20, 5000.
func strconvFormat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// hline draws a dashed horizontal line at y across the plot.
type hline struct{ y float64 }

// Plot implements plot.Plotter.
func (l hline) Plot(c draw.Canvas, p *plot.Plot) {
	_, trY := p.Transforms(&c)
	style := draw.LineStyle{Color: color.Gray{Y: 0x40}, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(6), vg.Points(3)}}
	c.StrokeLine2(style, c.Min.X, trY(l.y), c.Max.X, trY(l.y))
}

// Thumbnail implements plot.Thumbnailer, for the legend.
func (l hline) Thumbnail(c *draw.Canvas) {
	style := draw.LineStyle{Color: color.Gray{Y: 0x40}, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(4), vg.Points(2)}}
	y := c.Center().Y
	c.StrokeLine2(style, c.Min.X, y, c.Max.X, y)
}

// writeCharts draws, for each preset of the summary, the throughput of each
// side in each scenario and, with both interfaces, the speedups, into dir.
// It returns the files written.
func writeCharts(dir string, s *summary) ([]string, error) {
	var files []string
	for _, rs := range s.byPreset() {
		p := rs[0].preset
		base := filepath.Join(dir, p.name)
		if s.readMode != "" {
			base += "-direct"
		}
		fs, err := saveFigure(base+"-throughput", 11*vg.Inch, 4.5*vg.Inch, throughputPlots(rs, s.readMode != "", s.machine.caption())...)
		if err != nil {
			return files, err
		}
		files = append(files, fs...)
		if sp := speedupPlot(rs, s.machine.caption()); sp != nil {
			fs, err := saveFigure(base+"-speedup", 7*vg.Inch, 4.5*vg.Inch, sp)
			if err != nil {
				return files, err
			}
			files = append(files, fs...)
		}
	}
	return files, nil
}

// throughputPlots are one preset's write and read charts: a bar per side
// and scenario at the median throughput of a batch call, its whisker from
// the slowest to the fastest sample; caption says where they ran.
func throughputPlots(rs []*result, direct bool, caption string) []*plot.Plot {
	p := rs[0].preset
	groups := make([]string, len(rs))
	for i, r := range rs {
		groups[i] = fmt.Sprintf("%s\n%d keys a call", r.scenario.short, r.pages)
	}
	var plots []*plot.Plot
	for _, dir := range []struct {
		what  string
		names [3]string // old, new, floor
	}{{"write", [3]string{timeBatchSet, timeBatchSetV1, timePwrite}}, {"read", [3]string{timeBatchGet, timeBatchGetV1, timePread}}} {
		spans := map[string][]span{}
		var names []string
		top := 0.0
		for j, side := range []string{"old", "new", "floor"} {
			timing := dir.names[j]
			if !rs[0].has(timing) {
				continue
			}
			names = append(names, side)
			for _, r := range rs {
				st := r.stat(timing)
				b := float64(r.batchBytes())
				v := span{mid: b / st.median.Seconds(), lo: b / st.max.Seconds(), hi: b / st.min.Seconds()}
				top = math.Max(top, v.hi)
				spans[side] = append(spans[side], v)
			}
		}
		unit, scale := rateUnit(top)
		for _, ss := range spans {
			for i := range ss {
				ss[i] = span{ss[i].mid / scale, ss[i].lo / scale, ss[i].hi / scale}
			}
		}
		title := fmt.Sprintf("%s: %s throughput of one batch call", p.label(), dir.what)
		if direct && dir.what == "read" {
			title += " (new, floor: O_DIRECT)"
		}
		pl := newPlot(title+"\n"+caption, "scenario (median of "+plural(rs[0].samples, "sample")+"; whiskers: min–max)", "throughput ("+unit+")")
		addGroups(pl, groups, names, spans, true)
		pl.Y.Tick.Marker = plot.TickerFunc(plainTicks)
		pl.Y.Max *= 1.3 // room for the legend above the tallest whisker
		plots = append(plots, pl)
	}
	return plots
}

// speedupPlot is one preset's speedups, old time over new time, per
// scenario: a point at the ratio of the medians, a whisker over the
// ratios within each sample, on a log scale with a line at 1x. It is nil
// unless both interfaces ran. caption says where they ran.
func speedupPlot(rs []*result, caption string) *plot.Plot {
	if !rs[0].has(timeBatchSet) || !rs[0].has(timeBatchSetV1) {
		return nil
	}
	groups := make([]string, len(rs))
	spans := map[string][]span{}
	lo, hi := 1.0, 1.0
	for i, r := range rs {
		groups[i] = fmt.Sprintf("%s\n%d keys a call", r.scenario.short, r.pages)
		for _, d := range []struct{ name, old, new string }{{"write", timeBatchSet, timeBatchSetV1}, {"read", timeBatchGet, timeBatchGetV1}} {
			rg := r.ratioRange(d.old, d.new)
			v := span{mid: r.ratio(d.old, d.new), lo: rg.lo, hi: rg.hi}
			lo, hi = math.Min(lo, v.lo), math.Max(hi, v.hi)
			spans[d.name] = append(spans[d.name], v)
		}
	}
	pl := newPlot(fmt.Sprintf("%s: speedup of the zero-copy interface's batch calls\n%s", rs[0].preset.label(), caption),
		"scenario (point: ratio of medians; whiskers: per-sample min–max)", "speedup: old time / new time")
	addGroups(pl, groups, []string{"write", "read"}, spans, false)
	one := hline{1}
	pl.Add(one)
	pl.Legend.Add("1x: no difference", one)
	pl.Y.Scale = plot.LogScale{}
	// Room below the lowest whisker, and above the highest for the legend.
	pl.Y.Min, pl.Y.Max = lo/1.25, hi*math.Max(2, math.Pow(hi/lo*1.25, 0.4))
	pl.Y.Tick.Marker = plot.TickerFunc(ratioTicks)
	return pl
}

// plotCDF draws the cumulative distribution of each series of batch-call
// latencies, one line per series in name order, on a log time axis, into
// path (which names the PNG; an SVG is written beside it), with caption
// under the title. It returns the files written. Series with no values are
// left out.
func plotCDF(path, title, caption string, series map[string][]time.Duration) ([]string, error) {
	p := newPlot(title+"\n"+caption, "latency of one batch call (ms, log scale)", "fraction of batch calls at or below")
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, name := range slices.Sorted(maps.Keys(series)) {
		ds := slices.Clone(series[name])
		if len(ds) == 0 {
			continue
		}
		slices.Sort(ds)
		pts := make(plotter.XYs, len(ds))
		for j, d := range ds {
			ms := math.Max(float64(d)/float64(time.Millisecond), 1e-3) // a log axis has no 0
			pts[j] = plotter.XY{X: ms, Y: float64(j+1) / float64(len(ds))}
			lo, hi = math.Min(lo, ms), math.Max(hi, ms)
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, fmt.Errorf("perf: charts: %s: %w", name, err)
		}
		l.StepStyle = plotter.PostStep
		l.Color = seriesColor(name, i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(name, l)
	}
	if math.IsInf(lo, 1) {
		return nil, fmt.Errorf("perf: charts: %s: no values to plot", title)
	}
	p.Legend.Left = false // the curves rise on the left
	p.Legend.Top = false
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.TickerFunc(logTicks125)
	p.X.Min, p.X.Max = lo, hi
	p.Y.Min, p.Y.Max = 0, 1
	return saveFigure(strings.TrimSuffix(path, filepath.Ext(path)), 7*vg.Inch, 4.5*vg.Inch, p)
}
