package perf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gmeasure"
)

// servingSpecs registers the Serving scenario: the storage tier driven the
// way SGLang's cache controller drives it, for each preset and interface.
// The comparison's container calls it last, so that in its Ordered
// container Serving runs after the seed's scenarios. dir is the run's
// directory, made by that container's BeforeAll.
func servingSpecs(o options, dir *string) {
	Describe("Serving", Label("serving"), func() {
		so, err := parseServingOptions()
		if err != nil {
			It("has valid serving flags", func() { Fail(err.Error()) })
			return
		}
		var ifaces []string
		if o.runOld {
			ifaces = append(ifaces, interfaceOld)
		}
		if o.runNew {
			ifaces = append(ifaces, interfaceNew)
		}
		var mu sync.Mutex
		var all [][]*servingResult
		var where machine // for the charts

		for pi, p := range o.presets {
			It(p.label(), func() {
				// The byte check every page read goes through must be able
				// to fail.
				Expect(stampSelfTest(p.pageBytes)).To(Succeed())
				pl := newServingPlan(p, so)
				name := fmt.Sprintf("Serving [%s]", p.label())
				if o.direct {
					name += " O_DIRECT"
				}
				experiment := gmeasure.NewExperiment(name)
				// Added when the spec ends, so that -v prints every call.
				defer func() { AddReportEntry(experiment.Name, experiment, ReportEntryVisibilityFailureOrVerbose) }()
				record := func(n string, d time.Duration) {
					experiment.RecordDuration(n, d, gmeasure.Precision(time.Microsecond))
				}

				// Alternate which interface goes first from preset to
				// preset, so neither always meets the other's writeback.
				order := ifaces
				if pi%2 == 1 && len(ifaces) == 2 {
					order = []string{ifaces[1], ifaces[0]}
				}
				hosts, err := newServingHosts(pl)
				Expect(err).NotTo(HaveOccurred())
				DeferCleanup(closeHosts, hosts)
				byIface := map[string]*servingResult{}
				// When -serving-duration stops the first interface short,
				// the second starts no more requests than it did, so both
				// serve the same workload.
				limit := 0
				for _, iface := range order {
					res, err := runServing(pl, hosts, iface, *dir, o.direct, limit, record)
					Expect(err).NotTo(HaveOccurred(), "serving %s %s", p.name, iface)
					byIface[iface] = res
					switch {
					case limit > 0 && res.requests >= limit:
						res.limited = true
					case res.requests < pl.requests():
						res.cut = true
						if limit == 0 {
							limit = res.requests
						}
					}
				}
				var runs []*servingResult
				for _, iface := range ifaces {
					r := byIface[iface]
					runs = append(runs, r)
					// gmeasure keeps every latency but computes no p99, so
					// the quantiles the report prints go in as values too.
					for _, kind := range []callKind{fetchCall, backupCall} {
						for _, q := range []struct {
							name string
							q    float64
						}{{"median", 0.5}, {"p99", 0.99}, {"max", 1}} {
							experiment.RecordValue(fmt.Sprintf("%s %s", callName(kind, iface), q.name),
								ms(r.calls[kind].quantile(q.q)), gmeasure.Units("ms"), gmeasure.Precision(3))
						}
					}
				}
				mu.Lock()
				all = append(all, runs)
				where = machineOf(*dir, o.direct, o.runOld)
				mu.Unlock()

				AddReportEntry("Serving", servingReport(pl, o.readMode(), runs))
				// The summary lines go to stdout as well, each at the start
				// of a line (after the skipped specs' marks), where scripts
				// grep for them.
				var lines []string
				for _, r := range runs {
					lines = append(lines, r.summaryLine())
				}
				summary := strings.Join(lines, "\n")
				fmt.Fprintf(os.Stdout, "\n%s\n", summary)
				AddReportEntry("Serving summary", summary, ReportEntryVisibilityNever)
				for _, r := range runs {
					Expect(errors.Join(r.errs...)).NotTo(HaveOccurred(), "serving %s %s", p.name, r.iface)
					Expect(r.wrong).To(BeZero(), "serving %s %s: pages served with wrong bytes", p.name, r.iface)
					Expect(r.requests).To(BeNumerically(">", 0), "serving %s %s: no request ran", p.name, r.iface)
					// MIN across ranks, and a fetch never serves more
					// than BatchExists found.
					Expect(r.hitPages).To(BeNumerically("<=", r.existPages), "serving %s %s", p.name, r.iface)
					Expect(r.existPages).To(BeNumerically("<=", r.promptPages), "serving %s %s", p.name, r.iface)
				}
			})
		}

		AfterAll(func() {
			mu.Lock()
			defer mu.Unlock()
			if len(all) == 0 || o.plotDir == "" {
				return
			}
			files, err := plotServing(o.plotDir, where, all)
			report := "Serving latency CDF charts:"
			for _, f := range files {
				if abs, err := filepath.Abs(f); err == nil {
					f = abs
				}
				report += "\n  " + f
			}
			AddReportEntry("Serving charts", report)
			Expect(err).NotTo(HaveOccurred(), "serving charts")
		})
	})
}

// runServing runs pl through one interface on hosts, in a directory of its
// own inside dir, and removes it afterwards. At most limit requests start,
// when limit > 0.
func runServing(pl *servingPlan, hosts []*servingHost, iface, dir string, direct bool, limit int, record func(string, time.Duration)) (res *servingResult, err error) {
	d, err := servingDir(dir, pl.p, iface)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(d)) }()
	r, err := newServingRun(pl, hosts, iface, d, direct, limit, record)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, r.close()) }()
	return r.run(), nil
}
