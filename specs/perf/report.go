package perf

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// stat summarises one timing over the samples.
type stat struct {
	median, min, max time.Duration
}

func statOf(ds []time.Duration) stat {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	m := s[n/2]
	if n%2 == 0 {
		m = (s[n/2-1] + s[n/2]) / 2
	}
	return stat{median: m, min: s[0], max: s[n-1]}
}

// result is one scenario on one preset: every timing of every sample.
type result struct {
	preset   preset
	scenario scenario
	title    string // the scenario's title, as the spec is named
	pages    int
	samples  int
	timings  map[string][]time.Duration // by timing name, one per sample

	// With -perf-direct: how the sides read, what the new and floor sides
	// read over the samples and how much of it went O_DIRECT, and notes on
	// why some did not, each said once per preset.
	readMode string
	reads    readBytes
	notes    []string
}

func (r *result) batchBytes() int64 { return int64(r.pages) * int64(r.preset.pageBytes) }

func (r *result) has(name string) bool { return len(r.timings[name]) > 0 }

func (r *result) stat(name string) stat { return statOf(r.timings[name]) }

// rate is the throughput of a batch moved in the median time of name.
func (r *result) rate(name string) float64 {
	return float64(r.batchBytes()) / r.stat(name).median.Seconds()
}

// header is the seed's title line plus the preset and, with -perf-direct,
// how the sides read.
func (r *result) header() string {
	h := fmt.Sprintf("Performance Comparison: %s [%s]", r.title, r.preset.label())
	if r.readMode != "" {
		h += ", " + r.readMode
	}
	return h
}

// directShares is, with -perf-direct, the line that says what fraction of
// the bytes the new and floor sides read went O_DIRECT.
func (r *result) directShares() string {
	var parts []string
	if r.has(timeBatchGetV1) {
		parts = append(parts, "new "+shareOf(r.reads.v1Direct, r.reads.v1))
	}
	parts = append(parts, "floor "+shareOf(r.reads.floorDirect, r.reads.floor))
	return "O_DIRECT share of the bytes read over the samples: " + strings.Join(parts, ", ")
}

// shareOf prints part as a percentage of whole, and whole.
func shareOf(part, whole int64) string {
	if whole == 0 {
		return "- (nothing read)"
	}
	return fmt.Sprintf("%s of %s", percent(part, whole), formatBytes(whole))
}

// percent prints part over whole as a percentage, "-" for an empty whole.
func percent(part, whole int64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(part)/float64(whole))
}

const rule = "================================================================================"

// String renders the scenario in the seed's format, with throughput, the
// fraction of the floor, and the spread over the samples.
func (r *result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%s\n%s\n", rule, r.header(), rule)
	fmt.Fprintf(&b, "%d pages, %s per batch; median of %s after 1 warm-up, [min–max]\n",
		r.pages, formatBytes(r.batchBytes()), plural(r.samples, "sample"))
	if r.readMode != "" {
		fmt.Fprintf(&b, "%s\n", r.directShares())
		for _, n := range r.notes {
			fmt.Fprintf(&b, "note: %s\n", n)
		}
	}
	line := func(prefix, name, floor string) {
		if !r.has(name) {
			return
		}
		s := r.stat(name)
		fmt.Fprintf(&b, "%s %s: %s (%s", prefix, name, formatMs(s.median), formatRate(r.rate(name)))
		if floor != "" && r.has(floor) {
			fmt.Fprintf(&b, ", %.2fx the floor's time", r.stat(name).median.Seconds()/r.stat(floor).median.Seconds())
		}
		fmt.Fprintf(&b, ") [%.3f–%s]\n", float64(s.min)/float64(time.Millisecond), formatMs(s.max))
	}
	if r.has(timeBatchSet) {
		b.WriteString("\n")
		line("[Old Interface]", timeBatchSet, timePwrite)
		line("[Old Interface]", timeBatchGet, timePread)
	}
	if r.has(timeBatchSetV1) {
		b.WriteString("\n")
		line("[New Interface]", timeBatchSetV1, timePwrite)
		line("[New Interface]", timeBatchGetV1, timePread)
	}
	b.WriteString("\n")
	line("[Floor]", timePwrite, "")
	line("[Floor]", timePread, "")
	if r.has(timeBatchSet) || r.has(timeBatchSetV1) {
		fmt.Fprintf(&b, "\n%s\n", floorLegend)
	}
	if r.has(timeBatchSet) && r.has(timeBatchSetV1) {
		fmt.Fprintf(&b, "\n%s\n", rule)
		fmt.Fprintf(&b, "Write Speedup: %s\n", r.speedup(timeBatchSet, timeBatchSetV1))
		fmt.Fprintf(&b, "Read Speedup:  %s", r.speedup(timeBatchGet, timeBatchGetV1))
		if r.readMode != "" {
			b.WriteString("; old from the page cache, new O_DIRECT")
		}
		b.WriteString("\n")
	}
	b.WriteString(rule)
	return b.String()
}

// floorLegend explains the ratio to the floor that each interface's lines
// give.
const floorLegend = "x the floor's time = the call's median time / the floor's: a plain pwrite or pread of the same pages,\n" +
	"a file per page, with no copy, index or checksum. 1.00x costs what the floor costs; below 1x is faster than the floor."

// speedup is old over new, of the medians, with the spread of the ratio
// within each sample (both sides of a sample ran back to back).
func (r *result) speedup(oldName, newName string) string {
	x := r.ratio(oldName, newName)
	word := "faster"
	if x < 1 {
		word = "slower"
	}
	rg := r.ratioRange(oldName, newName)
	out := fmt.Sprintf("%.2fx (%s) [per sample %.2fx–%.2fx, mean %.2fx]", x, word, rg.lo, rg.hi, rg.mean)
	if rg.undecided() {
		out += "; " + undecidedNote
	}
	return out
}

// undecidedNote says what a per-sample range across 1x means.
const undecidedNote = "the per-sample range crosses 1x: this run does not tell the interfaces apart"

// ratioSpread is the range and mean of a ratio taken within each sample.
type ratioSpread struct{ lo, hi, mean float64 }

// undecided reports whether the range crosses 1: in some samples old was
// faster, in others new.
func (s ratioSpread) undecided() bool { return s.lo <= 1 && s.hi >= 1 }

// ratioRange is old over new within each sample, where both sides ran back
// to back under the same load: its minimum, maximum and mean.
func (r *result) ratioRange(oldName, newName string) ratioSpread {
	o, n := r.timings[oldName], r.timings[newName]
	var s ratioSpread
	for i := range o {
		v := o[i].Seconds() / n[i].Seconds()
		if i == 0 || v < s.lo {
			s.lo = v
		}
		if i == 0 || v > s.hi {
			s.hi = v
		}
		s.mean += v
	}
	s.mean /= float64(len(o))
	return s
}

func (r *result) ratio(oldName, newName string) float64 {
	return r.stat(oldName).median.Seconds() / r.stat(newName).median.Seconds()
}

// summary collects every scenario's result for the table at the end.
type summary struct {
	flags    string  // the flags of the run
	machine  machine // where it ran
	readMode string  // how the sides read, with -perf-direct
	results  []*result
}

func (s *summary) add(r *result) { s.results = append(s.results, r) }

// sort orders the results by preset, then by scenario, as the flags and the
// seed list them.
func (s *summary) sort() {
	slices.SortStableFunc(s.results, func(a, b *result) int {
		if c := presetIndex(a.preset.name) - presetIndex(b.preset.name); c != 0 {
			return c
		}
		return int(a.scenario.id) - int(b.scenario.id)
	})
}

// byPreset is the results, sorted, in one group per preset.
func (s *summary) byPreset() [][]*result {
	s.sort()
	var out [][]*result
	for i, r := range s.results {
		if i == 0 || r.preset.name != s.results[i-1].preset.name {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], r)
	}
	return out
}

// summaryGroup is a header over some of the summary's columns: write,
// read, O_DIRECT.
type summaryGroup struct {
	label      string
	first, end int // the columns under it
}

// String renders one table of presets x scenarios: median throughput of
// each interface and of the floor in MiB/s, and the speedups, one unit per
// column, within 120 columns; a legend under it says what the columns
// mean.
func (s *summary) String() string {
	if len(s.results) == 0 {
		return "Performance summary: no scenario ran"
	}
	s.sort()
	first := s.results[0]
	old, nw := first.has(timeBatchSet), first.has(timeBatchSetV1)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nPerformance summary: median throughput of a batch call over %s\n", rule, plural(first.samples, "sample"))
	fmt.Fprintf(&b, "%s\n%s\n", s.flags, s.machine)
	if s.readMode != "" {
		fmt.Fprintf(&b, "%s; writes: page cache, written back (untimed) before each direct read\n", s.readMode)
	}
	fmt.Fprintf(&b, "%s\n\n", rule)

	// Columns for what ran: write then read, each old, new, floor and,
	// with both interfaces, the speedup.
	head := []string{"preset", "scenario"}
	var groups []summaryGroup
	type col struct{ old, new, floor string }
	cols := []col{{timeBatchSet, timeBatchSetV1, timePwrite}, {timeBatchGet, timeBatchGetV1, timePread}}
	for _, c := range []string{"write", "read"} {
		g := summaryGroup{label: c + ", MiB/s", first: len(head)}
		if old {
			head = append(head, "old")
		}
		if nw {
			head = append(head, "new")
		}
		head = append(head, "floor")
		if old && nw {
			head = append(head, "speedup")
		}
		g.end = len(head)
		groups = append(groups, g)
	}
	direct := s.readMode != ""
	if direct {
		g := summaryGroup{label: "O_DIRECT, %", first: len(head)}
		if nw {
			head = append(head, "new")
		}
		head = append(head, "floor")
		g.end = len(head)
		groups = append(groups, g)
	}
	rows := [][]string{head}
	undecided := false
	for _, r := range s.results {
		row := []string{r.preset.name, r.scenario.short}
		for _, c := range cols {
			if old {
				row = append(row, r.mibCell(c.old))
			}
			if nw {
				row = append(row, r.mibCell(c.new))
			}
			row = append(row, r.mibCell(c.floor))
			if old && nw {
				mark := "  "
				if r.ratioRange(c.old, c.new).undecided() {
					mark, undecided = " ?", true
				}
				row = append(row, fmt.Sprintf("%.2fx%s", r.ratio(c.old, c.new), mark))
			}
		}
		if direct {
			if nw {
				row = append(row, percentNumber(r.reads.v1Direct, r.reads.v1))
			}
			row = append(row, percentNumber(r.reads.floorDirect, r.reads.floor))
		}
		rows = append(rows, row)
	}
	width := make([]int, len(head))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	// A group's label must fit over its columns.
	for _, g := range groups {
		span := 2 * (g.end - g.first - 1)
		for i := g.first; i < g.end; i++ {
			span += width[i]
		}
		if extra := len([]rune(g.label)) - span; extra > 0 {
			width[g.end-1] += extra
		}
	}
	var top strings.Builder
	at := 0 // the text column the next cell starts at
	for i := range head {
		if i > 0 {
			at += 2
		}
		for _, g := range groups {
			if g.first == i {
				top.WriteString(strings.Repeat(" ", at-len([]rune(top.String()))) + g.label)
			}
		}
		at += width[i]
	}
	b.WriteString(top.String() + "\n")
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			if i > 0 {
				line.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i < 2 {
				line.WriteString(c + pad)
			} else {
				line.WriteString(pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	b.WriteString("\n")
	var pages []string
	for _, g := range s.byPreset() {
		p := g[0].preset
		pages = append(pages, fmt.Sprintf("%s %s (%d tokens)", p.name, formatBytes(int64(p.pageBytes)), p.pool.PageSize))
	}
	fmt.Fprintf(&b, "page sizes: %s\n", strings.Join(pages, ", "))
	b.WriteString("old = copy interface (BatchSet, BatchGet), new = zero-copy (BatchSetV1, BatchGetV1), floor = plain pwrite/pread\n")
	if old && nw {
		b.WriteString("speedup = old median time / new median time: above 1x the zero-copy interface is faster\n")
	}
	if undecided {
		b.WriteString("? " + undecidedNote + " in that direction (per-sample ranges: each scenario above)\n")
	}
	if direct {
		b.WriteString("O_DIRECT = share of the read bytes that went O_DIRECT, the rest through the page cache (the scenarios say why)\n")
	}
	b.WriteString(rule)
	return b.String()
}

// mibCell is the median throughput of name in MiB/s, with three
// significant digits or more, or "-".
func (r *result) mibCell(name string) string {
	if !r.has(name) {
		return "-"
	}
	return formatMiB(r.rate(name) / (1 << 20))
}

// formatMiB prints v with at least three significant digits and at most
// three decimals.
func formatMiB(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// percentNumber is percent without its sign, for a column headed by it.
func percentNumber(part, whole int64) string {
	return strings.TrimSuffix(percent(part, whole), "%")
}

func presetIndex(name string) int {
	return slices.Index(presetNames(), name)
}

// formatMs prints a duration in milliseconds, as the seed does.
func formatMs(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// formatBytes prints a size in B, KiB, MiB or GiB.
func formatBytes(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
}

// formatRate prints bytes per second in KiB/s, MiB/s or GiB/s.
func formatRate(bps float64) string {
	switch {
	case bps < 1<<20:
		return fmt.Sprintf("%.1f KiB/s", bps/(1<<10))
	case bps < 1<<30:
		return fmt.Sprintf("%.1f MiB/s", bps/(1<<20))
	}
	return fmt.Sprintf("%.2f GiB/s", bps/(1<<30))
}

// plural prints n and a noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
