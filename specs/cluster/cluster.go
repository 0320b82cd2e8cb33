package cluster

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gmeasure"
)

// The specs' bounds and sizes.
const (
	localNodes = 3 // node processes without -cluster-dirs
	// seenBound bounds how long a page written on one node may take to be
	// served on another, and a change (Clear, a damaged file) to be seen.
	// It is a bound on correctness, far above the latencies measured
	// (docs/cluster.md), not a timing.
	seenBound    = 10 * time.Second
	storeSamples = 10 // visibility samples through the stores
	fsSamples    = 4  // visibility samples through the file system alone
	evictFor     = 4 * time.Second
	evictPace    = 50 * time.Millisecond
	evictFiles   = 25
)

// The names of the visibility measurements.
const (
	visV1      = "V1 page, store (BatchGetV1)"
	visOld     = "old page, store (BatchGet)"
	visListing = "V1 batch file, readdir"
	visStat    = "old file, stat"
	visClear   = "Clear: stop serving"
	visDamage  = "damaged file: refused"
)

var _ = Describe("Cluster", Serial, Ordered, Label("cluster"), func() {
	var (
		nodes []*nodeProc
		mode  string
		tally counts
		vis   []time.Duration // every V1 page's visibility through a store
	)
	// record adds c to the tally and fails the spec on a wrong page.
	record := func(what string, c counts) {
		GinkgoHelper()
		tally.add(c)
		Expect(c.Wrong).To(BeZero(), "%s: wrong pages: %s", what, strings.Join(c.Why, "; "))
	}
	others := func(w int) []*nodeProc {
		return slices.DeleteFunc(slices.Clone(nodes), func(p *nodeProc) bool { return p.id == w })
	}

	BeforeAll(func() {
		dirs := []string(flagDirs)
		if len(dirs) == 0 {
			tmp := GinkgoT().TempDir()
			dirs = slices.Repeat([]string{tmp}, localNodes)
			mode = "single node: local processes"
		} else {
			mode = "shared directory mounted " + fmt.Sprint(len(dirs)) + " times"
		}
		// Work in a fresh subdirectory, made through the first node's
		// mount, which every other mount must show.
		var b [6]byte
		_, _ = rand.Read(b[:])
		sub := "hicache-cluster-" + hex.EncodeToString(b[:])
		Expect(os.Mkdir(filepath.Join(dirs[0], sub), 0o755)).To(Succeed())
		DeferCleanup(os.RemoveAll, filepath.Join(dirs[0], sub))
		exe, err := os.Executable()
		Expect(err).NotTo(HaveOccurred())
		// Nodes on other hosts run a copy of this binary made through the
		// first, local, mount.
		shared := filepath.Join(dirs[0], sub, "hicache-cluster-node")
		for _, d := range dirs {
			if host, _ := remote(d); host != "" {
				Expect(copyFile(exe, shared)).To(Succeed())
				DeferCleanup(os.Remove, shared)
				break
			}
		}
		var lines []string
		for i, entry := range dirs {
			host, d := remote(entry)
			d = filepath.Join(d, sub)
			var p *nodeProc
			if host == "" {
				Eventually(func() error { _, err := os.Stat(d); return err }).WithTimeout(seenBound).Should(Succeed(),
					"cluster: %s does not show %s, made through %s: -cluster-dirs must name one shared directory as each node mounts it", entry, sub, dirs[0])
				p = startNode(i, "", d, exe)
			} else {
				p = startNode(i, host, d, filepath.Join(d, filepath.Base(shared)))
			}
			DeferCleanup(p.stop)
			nodes = append(nodes, p)
			st := p.start(request{Op: "stats", Store: storeSpec{Model: "cl-hello"}}).next(time.Minute)
			Expect(st.Err).To(BeEmpty(), "cluster: node %d (%s) did not start: is %s the directory made through %s, as %s mounts it? Its stderr is above.", i, entry, d, dirs[0], cmp.Or(host, "this host"))
			where := "pid " + fmt.Sprint(p.cmd.Process.Pid)
			if host != "" {
				where = "on " + host + " through ssh"
			}
			lines = append(lines, fmt.Sprintf("node %d: %s, %s (%s)", i, where, d, st.FS))
		}
		AddReportEntry("cluster nodes", fmt.Sprintf("%s: %d node processes\n%s", mode, len(nodes), strings.Join(lines, "\n")))
	})

	AfterAll(func() {
		p50, p99 := "n/a", "n/a"
		if len(vis) > 0 {
			p50, p99 = percentile(vis, 50).String(), percentile(vis, 99).String()
		}
		AddReportEntry("cluster summary", fmt.Sprintf("%s\ncluster: %d nodes, %d pages checked, %d wrong, visibility p50 %s p99 %s",
			mode, len(nodes), tally.Checked, tally.Wrong, p50, p99))
	})

	It("serves every page one node writes, through both interfaces, byte-exact on every other node", func() {
		exp := gmeasure.NewExperiment("cluster visibility: from the writer's call returning to another node's first hit")
		AddReportEntry(exp.Name, exp, ReportEntryVisibilityFailureOrVerbose)
		spec := storeSpec{Model: "cl-vis"}
		samples := map[string][]time.Duration{}
		for sample := range storeSamples + fsSamples {
			w := sample % len(nodes)
			var v1, old []string
			for j := range 4 {
				v1 = append(v1, fmt.Sprintf("v-%d-%d", sample, j))
				old = append(old, fmt.Sprintf("o-%d-%d", sample, j))
			}
			op, names := "watch", [2]string{visV1, visOld}
			if sample >= storeSamples {
				op, names = "watchfs", [2]string{visListing, visStat}
			}
			var watches []*call
			for _, p := range others(w) {
				c := p.start(request{Op: op, Store: spec, V1: v1, Old: old, For: seenBound})
				c.event("ready", seenBound)
				watches = append(watches, c)
			}
			wrote := nodes[w].do(request{Op: "write", Store: spec, V1: v1, Old: old})
			Expect(wrote.OK).To(HaveEach(BeTrue()))
			isV1 := set(v1)
			for _, c := range watches {
				rep := c.wait(seenBound+time.Minute, func(ev reply) {
					d := max(0, ev.at.Sub(wrote.at))
					for _, k := range ev.Keys {
						name := names[1]
						if isV1[k] {
							name = names[0]
						}
						exp.RecordDuration(name, d)
						samples[name] = append(samples[name], d)
						if op == "watch" && isV1[k] {
							vis = append(vis, d)
						}
					}
				})
				record("watch", rep.Counts)
				Expect(rep.Keys).To(BeEmpty(), "node %d never saw these pages of node %d within %s", c.p.id, w, seenBound)
			}
			// Every node, the writer too, serves every page byte-exact.
			for _, p := range nodes {
				rep := p.do(request{Op: "read", Store: spec, V1: v1, Old: old})
				record("read", rep.Counts)
				Expect(rep.OK).To(HaveEach(BeTrue()), "node %d", p.id)
			}
		}
		AddReportEntry("cluster visibility", visibilityTable(samples, visV1, visOld, visListing, visStat))
	})

	It("keeps every page right while all nodes write and read at once, on one TP rank and on several", func() {
		same := storeSpec{Model: "cl-churn"}
		rank := func(i int) storeSpec { return storeSpec{Model: "cl-tp", Rank: i, Size: len(nodes)} }
		d := time.Duration(flagDuration)
		var calls []*call
		for i, p := range nodes {
			also := []storeSpec{rank(i)}
			for j := range nodes {
				if j != i {
					also = append(also, rank(j))
				}
			}
			calls = append(calls, p.start(request{Op: "churn", Store: same, Also: also, For: d, Seed: int64(i + 1)}))
		}
		stored := map[string][]string{}
		specs := map[string]storeSpec{same.String(): same}
		for i := range nodes {
			specs[rank(i).String()] = rank(i)
		}
		var churn counts
		for _, c := range calls {
			rep := c.wait(d+time.Minute, nil)
			churn.add(rep.Counts)
			record("churn", rep.Counts)
			for s, keys := range rep.Stored {
				stored[s] = append(stored[s], keys...)
			}
		}
		Expect(churn.Written).To(BeNumerically(">", 0))
		Expect(churn.Checked).To(BeNumerically(">", 0), "no page was served while the nodes wrote")
		// Every page reported stored is served by every node.
		read := 0
		for name, keys := range stored {
			slices.Sort(keys)
			keys = slices.Compact(keys)
			for _, p := range nodes {
				rep := p.do(request{Op: "readall", Store: specs[name], V1: keys, For: seenBound})
				record("readall", rep.Counts)
				Expect(rep.Keys).To(BeEmpty(), "node %d does not serve pages reported stored in %s", p.id, name)
				read += len(keys)
			}
		}
		AddReportEntry("cluster concurrent writers", fmt.Sprintf(
			"%d nodes for %s: %d pages reported stored, %d pages served and checked during the run (%d misses), then %d reads of every stored page on every node; %d wrong",
			len(nodes), d, churn.Written, churn.Checked, churn.Misses, read, churn.Wrong))
	})

	It("stops serving a node's pages within the bound after its Clear, and never serves them stale after a miss", func() {
		exp := gmeasure.NewExperiment("cluster Clear")
		AddReportEntry(exp.Name, exp, ReportEntryVisibilityFailureOrVerbose)
		spec := storeSpec{Model: "cl-clear"}
		var v1, old []string
		for j := range 8 {
			v1 = append(v1, fmt.Sprintf("c-%d", j))
			old = append(old, fmt.Sprintf("co-%d", j))
		}
		w := nodes[0]
		Expect(w.do(request{Op: "write", Store: spec, V1: v1, Old: old, Gen: 1}).OK).To(HaveEach(BeTrue()))
		var watches []*call
		for _, p := range others(w.id) {
			rep := p.do(request{Op: "watch", Store: spec, V1: v1, Old: old, For: seenBound})
			record("watch", rep.Counts)
			Expect(rep.Keys).To(BeEmpty(), "node %d never served generation 1", p.id)
			c := p.start(request{Op: "clearwatch", Store: spec, V1: v1, Old: old, Gen: 2, For: 2 * seenBound})
			c.event("ready", seenBound)
			watches = append(watches, c)
		}
		var stops []time.Duration
		clr := w.start(request{Op: "clear", Store: spec, V1: v1, Old: old, Gen: 2})
		cleared := clr.event("cleared", time.Minute)
		Expect(clr.wait(time.Minute, nil).OK).To(HaveEach(BeTrue()))
		for _, c := range watches {
			stopped := c.event("stopped", 2*seenBound)
			d := max(0, stopped.at.Sub(cleared.at))
			exp.RecordDuration(visClear, d)
			stops = append(stops, d)
			Expect(d).To(BeNumerically("<", seenBound), "node %d served node %d's cleared pages for %s", c.p.id, w.id, d)
			rep := c.wait(2*seenBound, nil)
			record("clearwatch", rep.Counts)
			Expect(rep.Keys).To(BeEmpty(), "node %d never served generation 2", c.p.id)
		}
		AddReportEntry("cluster Clear", fmt.Sprintf("bound %s\n%s", seenBound, visibilityTable(map[string][]time.Duration{visClear: stops}, visClear)))
	})

	It("refuses a file damaged through one node on every node", func() {
		exp := gmeasure.NewExperiment("cluster damaged files")
		AddReportEntry(exp.Name, exp, ReportEntryVisibilityFailureOrVerbose)
		spec := storeSpec{Model: "cl-corrupt"}
		v1a := []string{"d-0", "d-1", "d-2", "d-3"}
		v1b := []string{"d-4", "d-5", "d-6", "d-7"}
		old := []string{"do-0", "do-1", "do-2", "do-3"}
		w, bad := nodes[0], nodes[len(nodes)-1]
		locs := map[string]located{}
		for _, r := range []request{{V1: v1a}, {V1: v1b, Old: old}} {
			r.Op, r.Store = "write", spec
			rep := w.do(r)
			Expect(rep.OK).To(HaveEach(BeTrue()))
			for _, l := range rep.Locs {
				locs[l.Key] = l
			}
		}
		v1 := append(slices.Clone(v1a), v1b...)
		for _, p := range nodes {
			rep := p.do(request{Op: "watch", Store: spec, V1: v1, Old: old, For: seenBound})
			record("watch", rep.Counts)
			Expect(rep.Keys).To(BeEmpty(), "node %d never served the pages", p.id)
		}
		// One byte of d-1 flipped in place; d-7's file cut inside d-7 (its
		// index and trailer go too); do-0 cut short and do-1 lengthened.
		for _, r := range []request{
			{Path: locs["d-1"].Path, Off: locs["d-1"].Off + locs["d-1"].Len/2, Mode: "flip"},
			{Path: locs["d-7"].Path, Off: locs["d-7"].Off + locs["d-7"].Len/2, Mode: "truncate"},
			{Path: locs["do-0"].Path, Off: locs["do-0"].Len / 2, Mode: "truncate"},
			{Path: locs["do-1"].Path, Off: locs["do-1"].Len + 100, Mode: "truncate"},
		} {
			r.Op, r.Store = "corrupt", spec
			bad.do(r)
		}
		damaged := time.Now()
		var refusals []time.Duration
		var watches []*call
		for _, p := range nodes {
			watches = append(watches, p.start(request{Op: "refusewatch", Store: spec, V1: v1, Old: old,
				Bad: []string{"d-1", "d-7", "do-0", "do-1"}, Good: []string{"d-0", "d-2", "d-3", "do-2", "do-3"}, For: seenBound}))
		}
		for _, c := range watches {
			done := c.event("refused", seenBound+time.Minute)
			d := max(0, done.at.Sub(damaged))
			exp.RecordDuration(visDamage, d)
			refusals = append(refusals, d)
			fin := c.wait(time.Minute, nil)
			record("refusewatch", fin.Counts)
			Expect(fin.Keys).To(BeEmpty(), "node %d still serves damaged pages after %s", c.p.id, seenBound)
		}
		AddReportEntry("cluster damaged files", fmt.Sprintf("bound %s\n%s", seenBound, visibilityTable(map[string][]time.Duration{visDamage: refusals}, visDamage)))
	})

	It("serves only misses or right pages while one node evicts under MaxBytes and the others read", func() {
		// Room for evictFiles batch files of 4 pages. The writer first
		// writes more than that, so it has evicted before the readers
		// start, then a batch every evictPace while they read.
		spec := storeSpec{Model: "cl-evict", MaxBytes: evictFiles * 4 * int64(nodePageBytes())}
		wc := nodes[0].start(request{Op: "evict", Store: spec, Role: "writer", Batches: 2 * evictFiles, For: evictFor, Pace: evictPace, Seed: 1})
		wc.event("ready", time.Minute)
		calls := []*call{wc}
		for _, p := range others(0) {
			calls = append(calls, p.start(request{Op: "evict", Store: spec, Role: "reader", Off: 2 * evictFiles * 4, For: evictFor, Pace: evictPace, Seed: int64(p.id + 1)}))
		}
		var readers counts
		var lines []string
		for i, c := range calls {
			rep := c.wait(evictFor+time.Minute, nil)
			record("evict", rep.Counts)
			if i == 0 {
				Expect(rep.Stats.Evicted).To(BeNumerically(">", 0), "the writer evicted nothing")
			} else {
				readers.add(rep.Counts)
			}
			lines = append(lines, fmt.Sprintf("node %d: %d pages written, %d pages served and checked, %d misses, %d files evicted",
				c.p.id, rep.Counts.Written, rep.Counts.Checked, rep.Counts.Misses, rep.Stats.Evicted))
		}
		Expect(readers.Checked).To(BeNumerically(">", 0), "no reader was served a page")
		Expect(readers.Misses).To(BeNumerically(">", 0), "no reader missed an evicted page")
		AddReportEntry("cluster eviction", strings.Join(lines, "\n"))
	})
})

// nodePageBytes returns the bytes of one page of nodeShape.
func nodePageBytes() int {
	c := nodeShape.Config()
	return c.PageSize * 2 * c.LayerNum * c.HeadNum * c.HeadDim * c.DType.Size()
}

// percentile returns the p-th percentile of ds (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// visibilityTable formats median, p99 and max of each measurement.
func visibilityTable(samples map[string][]time.Duration, names ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-30s %6s %12s %12s %12s\n", "latency", "n", "median", "p99", "max")
	for _, n := range names {
		ds := samples[n]
		if len(ds) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%-30s %6d %12s %12s %12s\n", n, len(ds),
			percentile(ds, 50).Round(10*time.Microsecond), percentile(ds, 99).Round(10*time.Microsecond), percentile(ds, 100).Round(10*time.Microsecond))
	}
	return b.String()
}

// copyFile copies the executable file src to dst.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
