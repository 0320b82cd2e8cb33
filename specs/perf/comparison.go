package perf

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gmeasure"
)

// scenarioID orders the seed's scenarios.
type scenarioID int

const (
	smallBatch scenarioID = iota
	mediumBatch
	largeBatch
	multipleRuns
)

// scenario is one of the seed's performance cases.
type scenario struct {
	id    scenarioID
	short string // the name in the summary table
	keys  int
}

// scenarios are the seed's, under the seed's names. Multiple Runs is the
// seed's repeated 10-key case: the same batch as Small Batch, with its
// per-run speedups as the point of interest.
var scenarios = []scenario{
	{smallBatch, "Small Batch", 10},
	{mediumBatch, "Medium Batch", 50},
	{largeBatch, "Large Batch", 100},
	{multipleRuns, "Multiple Runs", 10},
}

// maxKeys is the largest batch of any scenario: the pool holds it twice.
const maxKeys = 100

// title is the scenario's name as the seed prints it.
func (s scenario) title(runs int) string {
	if s.id == multipleRuns {
		return fmt.Sprintf("Multiple Runs (%d keys, %s)", s.keys, plural(runs, "run"))
	}
	return fmt.Sprintf("%s (%d keys)", s.short, s.keys)
}

var _ = Describe("Performance comparison of the old and the zero-copy interface", Serial, Label("perf"), Ordered, ContinueOnFailure, func() {
	o, err := parseOptions()
	if err != nil {
		// The root suite checks the flags before RunSpecs; this only
		// guards a suite that does not.
		It("has valid perf flags", func() { Fail(err.Error()) })
		return
	}
	var sides []side
	if o.runOld {
		sides = append(sides, sideOld)
	}
	if o.runNew {
		sides = append(sides, sideNew)
	}
	sides = append(sides, sideFloor)

	var dir string
	sum := &summary{}
	BeforeAll(func() {
		var err error
		dir, err = os.MkdirTemp(o.dir, "hicache-perf-")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(os.RemoveAll, dir)
		directFlag := ""
		if o.direct {
			directFlag = " -perf-direct"
		}
		sum.flags = fmt.Sprintf("-interface=%s -perf-samples=%d -perf-presets=%s%s", o.iface, o.samples, o.presetArg, directFlag)
		sum.machine = machineOf(dir, o.direct, o.runOld)
		sum.readMode = o.readMode()
	})

	for _, p := range o.presets {
		Context(p.label(), func() {
			var r *rig
			// Why some reads of this preset did not go O_DIRECT is said
			// once, in the first scenario where it happens.
			var saidFloor, saidNew bool
			BeforeAll(func() {
				var err error
				r, err = newRig(p, dir, maxKeys, o.direct)
				Expect(err).NotTo(HaveOccurred())
				DeferCleanup(r.close)
			})

			for _, sc := range scenarios {
				title := sc.title(o.samples)
				It(title, func() {
					name := fmt.Sprintf("%s [%s]", title, p.label())
					if o.direct {
						name += " O_DIRECT"
					}
					experiment := gmeasure.NewExperiment(name)
					// Added when the spec ends, failed or not, so that -v
					// prints the table with every sample, not its header.
					defer func() { AddReportEntry(experiment.Name, experiment, ReportEntryVisibilityFailureOrVerbose) }()

					_, err := r.sample(sc.keys, fmt.Sprintf("%s-warmup", sc.short), 0, sides)
					Expect(err).NotTo(HaveOccurred(), "warm-up")

					r.reads = readBytes{} // count the recorded samples only
					res := &result{preset: p, scenario: sc, title: title, pages: sc.keys, samples: o.samples,
						timings: map[string][]time.Duration{}, readMode: o.readMode()}
					experiment.Sample(func(i int) {
						ts, err := r.sample(sc.keys, fmt.Sprintf("%s-%d", sc.short, i), i, sides)
						Expect(err).NotTo(HaveOccurred(), "sample %d", i)
						for _, t := range ts {
							experiment.RecordDuration(t.name, t.d, gmeasure.Precision(time.Microsecond))
							res.timings[t.name] = append(res.timings[t.name], t.d)
						}
					}, gmeasure.SamplingConfig{N: o.samples})

					res.reads = r.reads
					if o.direct && r.reads.v1Direct < r.reads.v1 && !saidNew {
						saidNew = true
						res.notes = append(res.notes, "new reads that did not go O_DIRECT went through the page cache: hicachefile reads a page direct only where "+
							"its pool buffers, file offset and length meet the file system's O_DIRECT alignment (statx STATX_DIOALIGN)")
					}
					if o.direct && r.floorWhy != "" && !saidFloor {
						saidFloor = true
						res.notes = append(res.notes, fmt.Sprintf("floor reads fell back to the page cache: %s", r.floorWhy))
					}

					AddReportEntry("Performance Comparison", res.String())
					sum.add(res)
				})
			}
		})
	}

	// The Serving scenario runs last, in this Ordered container.
	servingSpecs(o, &dir)

	AfterAll(func() {
		if len(sum.results) == 0 {
			return // only the Serving scenario ran
		}
		report := sum.String()
		var chartErr error
		if o.plotDir != "" && len(sum.results) > 0 {
			var files []string
			files, chartErr = writeCharts(o.plotDir, sum)
			if len(files) > 0 {
				report += "\ncharts:"
			}
			for _, f := range files {
				if abs, err := filepath.Abs(f); err == nil {
					f = abs
				}
				report += "\n  " + f
			}
		}
		AddReportEntry("Performance summary", report)
		Expect(chartErr).NotTo(HaveOccurred(), "charts")
	})
})
