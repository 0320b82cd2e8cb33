package perf

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// callSpan is the interval of one storage call.
type callSpan struct{ start, end time.Time }

// callStats is every fetch or every backup call of a run.
type callStats struct {
	lat   []time.Duration // each call's latency
	spans []callSpan      // each call's interval
	pages int64           // pages the calls served or stored, over all ranks
}

// busy is the time during which at least one call was in flight: the union
// of the calls' intervals, so that concurrent calls count once.
func (c *callStats) busy() time.Duration {
	s := slices.Clone(c.spans)
	slices.SortFunc(s, func(a, b callSpan) int { return a.start.Compare(b.start) })
	var total time.Duration
	var cur callSpan
	for i, x := range s {
		switch {
		case i == 0:
			cur = x
		case !x.start.After(cur.end):
			if x.end.After(cur.end) {
				cur.end = x.end
			}
		default:
			total += cur.end.Sub(cur.start)
			cur = x
		}
	}
	if len(s) > 0 {
		total += cur.end.Sub(cur.start)
	}
	return total
}

// quantile is the q-quantile of the latencies by the nearest-rank method:
// the smallest latency at least a fraction q of the calls did not exceed.
func (c *callStats) quantile(q float64) time.Duration {
	if len(c.lat) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(c.lat))
	i := max(int(math.Ceil(q*float64(len(s))))-1, 0)
	return s[min(i, len(s)-1)]
}

// servingResult is what one run measured.
type servingResult struct {
	pl    *servingPlan
	iface string

	requests     int   // requests that ran
	cut          bool  // -serving-duration stopped it before the plan's end
	limited      bool  // it ran only as many requests as the other interface
	promptPages  int64 // full pages of their prompts
	promptTokens int64 // tokens of their prompts
	existPages   int64 // pages BatchExists found, MIN across ranks
	hitPages     int64 // pages fetched, MIN across ranks: the hit count
	fetchedBytes int64 // bytes fetched, over all ranks
	backupBytes  int64 // bytes backed up, over all writing ranks
	backupFailed int   // backups that stopped at a failed batch
	wrong        int   // pages served with wrong bytes
	errs         []error
	calls        [2]callStats // by callKind
	wall         time.Duration

	evicted, evictedBytes  int64   // files the stores removed to keep within MaxBytes
	readBytes, directBytes int64   // bytes the stores served, and of them read O_DIRECT
	setsByRank             []int64 // pages each rank's store wrote
}

func newServingResult(pl *servingPlan, iface string) *servingResult {
	return &servingResult{pl: pl, iface: iface}
}

// hitRate is the share of the prompts' full pages the tier served.
func (s *servingResult) hitRate() float64 {
	return safeDiv(float64(s.hitPages), float64(s.promptPages))
}

// tokenHitRate is the share of the prompts' tokens the tier served: a
// prompt's last, partial page is never stored.
func (s *servingResult) tokenHitRate() float64 {
	return safeDiv(float64(s.hitPages*int64(s.pl.ps)), float64(s.promptTokens))
}

// prefetchRate is bytes fetched per second of fetch time, over all ranks.
func (s *servingResult) prefetchRate() float64 {
	return safeDiv(float64(s.fetchedBytes), s.calls[fetchCall].busy().Seconds())
}

// backupRate is bytes backed up per second of backup time.
func (s *servingResult) backupRate() float64 {
	return safeDiv(float64(s.backupBytes), s.calls[backupCall].busy().Seconds())
}

// tokensFed is the prompt tokens the tier served per second of fetch time.
func (s *servingResult) tokensFed() float64 {
	return safeDiv(float64(s.hitPages*int64(s.pl.ps)), s.calls[fetchCall].busy().Seconds())
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// summaryLine is the one line per preset and interface that people and
// scripts grep for; its shape is a contract.
func (s *servingResult) summaryLine() string {
	return fmt.Sprintf("serving: preset=%s interface=%s hit_rate=%.4f prefetch_gibps=%.3f get_p99_ms=%.3f set_p99_ms=%.3f wrong=%d",
		s.pl.p.name, s.iface, s.hitRate(), s.prefetchRate()/(1<<30),
		ms(s.calls[fetchCall].quantile(0.99)), ms(s.calls[backupCall].quantile(0.99)), s.wrong)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// servingReport renders one preset's runs side by side, with the speedups
// of new over old when both ran.
func servingReport(pl *servingPlan, readMode string, runs []*servingResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nServing: %s [%s]", rule, pl.p.name, pl.p.label())
	if readMode != "" {
		fmt.Fprintf(&b, ", %s", readMode)
	}
	fmt.Fprintf(&b, "\n%s\n%s\n\n", rule, pl.describe())

	var old, nw *servingResult
	for _, r := range runs {
		if r.iface == interfaceOld {
			old = r
		} else {
			nw = r
		}
	}
	head := []string{""}
	for _, r := range runs {
		head = append(head, r.iface)
	}
	both := old != nil && nw != nil
	if both {
		head = append(head, "new vs old")
	}
	rows := [][]string{head}
	row := func(name string, cell func(r *servingResult) string, speedup func(o, n *servingResult) float64) {
		line := []string{name}
		for _, r := range runs {
			line = append(line, cell(r))
		}
		if both {
			x := ""
			if speedup != nil {
				if v := speedup(old, nw); v > 0 && !math.IsInf(v, 0) {
					x = fmt.Sprintf("%.2fx", v)
				}
			}
			line = append(line, x)
		}
		rows = append(rows, line)
	}
	faster := func(get func(r *servingResult) float64) func(o, n *servingResult) float64 {
		return func(o, n *servingResult) float64 { return safeDiv(get(n), get(o)) }
	}
	quicker := func(kind callKind, q float64) func(o, n *servingResult) float64 {
		return func(o, n *servingResult) float64 {
			return safeDiv(float64(o.calls[kind].quantile(q)), float64(n.calls[kind].quantile(q)))
		}
	}
	row("requests run", func(r *servingResult) string {
		switch {
		case r.cut:
			return fmt.Sprintf("%d of %d (-serving-duration)", r.requests, pl.requests())
		case r.limited:
			return fmt.Sprintf("%d of %d (as many as the other)", r.requests, pl.requests())
		}
		return fmt.Sprintf("%d of %d", r.requests, pl.requests())
	}, nil)
	row("stored prefix found", func(r *servingResult) string {
		return fmt.Sprintf("%d pages", r.existPages)
	}, nil)
	row("hit rate, pages", func(r *servingResult) string {
		return fmt.Sprintf("%.4f (%d of %d)", r.hitRate(), r.hitPages, r.promptPages)
	}, nil)
	row("hit rate, tokens", func(r *servingResult) string { return fmt.Sprintf("%.4f", r.tokenHitRate()) }, nil)
	row("prefetch", func(r *servingResult) string { return formatRate(r.prefetchRate()) }, faster((*servingResult).prefetchRate))
	row("prefetch, pages/s", func(r *servingResult) string {
		return fmt.Sprintf("%.0f", safeDiv(float64(r.calls[fetchCall].pages), r.calls[fetchCall].busy().Seconds()))
	}, nil)
	row("tokens/s fed", func(r *servingResult) string { return fmt.Sprintf("%.0f", r.tokensFed()) }, faster((*servingResult).tokensFed))
	latRows := func(label string, kind callKind) {
		row(label+" batches", func(r *servingResult) string {
			c := &r.calls[kind]
			return fmt.Sprintf("%d, %.1f pages each", len(c.lat), safeDiv(float64(c.pages), float64(len(c.lat))))
		}, nil)
		for _, q := range []struct {
			name string
			q    float64
		}{{"median", 0.5}, {"p99", 0.99}, {"max", 1}} {
			row("  "+q.name, func(r *servingResult) string { return formatMs(r.calls[kind].quantile(q.q)) }, quicker(kind, q.q))
		}
	}
	latRows("fetch", fetchCall)
	row("backup", func(r *servingResult) string { return formatRate(r.backupRate()) }, faster((*servingResult).backupRate))
	row("backup, pages/s", func(r *servingResult) string {
		return fmt.Sprintf("%.0f", safeDiv(float64(r.calls[backupCall].pages), r.calls[backupCall].busy().Seconds()))
	}, nil)
	latRows("backup", backupCall)
	row("backups stopped", func(r *servingResult) string { return fmt.Sprint(r.backupFailed) }, nil)
	row("evicted", func(r *servingResult) string {
		return fmt.Sprintf("%d files, %s", r.evicted, formatBytes(r.evictedBytes))
	}, nil)
	if readMode != "" {
		row("read O_DIRECT", func(r *servingResult) string { return percent(r.directBytes, r.readBytes) }, nil)
	}
	row("wall time", func(r *servingResult) string { return fmt.Sprintf("%.2f s", r.wall.Seconds()) }, nil)
	row("wrong pages", func(r *servingResult) string { return fmt.Sprint(r.wrong) }, nil)
	writeTable(&b, rows)
	b.WriteString(rule)
	return b.String()
}

// writeTable writes rows with the first column left-aligned and the others
// right-aligned.
func writeTable(b *strings.Builder, rows [][]string) {
	var width []int
	for _, row := range rows {
		for i, c := range row {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i == 0 {
				line.WriteString(c + pad)
			} else {
				line.WriteString("  " + pad + c)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}
