package perf

import (
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The charts are specs of their own, on made-up timings, so that the normal
// suite checks they are drawn without running the perf specs.
var _ = Describe("Charts of the performance comparison", func() {
	It("draws each preset's throughput and speedup, as PNG and SVG", func() {
		dir := GinkgoT().TempDir()
		sum := madeUpSummary(dir)
		files, err := writeCharts(dir, sum)
		Expect(err).NotTo(HaveOccurred())
		Expect(files).To(ConsistOf(
			filepath.Join(dir, "seed-throughput.png"), filepath.Join(dir, "seed-throughput.svg"),
			filepath.Join(dir, "seed-speedup.png"), filepath.Join(dir, "seed-speedup.svg"),
			filepath.Join(dir, "llama3-8b-throughput.png"), filepath.Join(dir, "llama3-8b-throughput.svg"),
			filepath.Join(dir, "llama3-8b-speedup.png"), filepath.Join(dir, "llama3-8b-speedup.svg"),
		))
		for _, f := range files {
			if filepath.Ext(f) == ".png" {
				expectPNG(f, 11*chartDPI, 7*chartDPI)
				continue
			}
			// Every chart says where it ran and what a value is.
			svg, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(svg)).To(ContainSubstring(fmt.Sprintf("%d CPUs", runtime.NumCPU())), f)
			Expect(string(svg)).To(ContainSubstring(sum.machine.fs), f)
			Expect(string(svg)).To(ContainSubstring("page cache"), f)
			Expect(string(svg)).To(ContainSubstring("batch call"), f)
		}
	})

	It("prints a summary within 120 columns, one unit per column, with a legend", func() {
		sum := madeUpSummary(GinkgoT().TempDir())
		text := sum.String()
		// With the longest preset name and the O_DIRECT columns too.
		wide := madeUpSummary(GinkgoT().TempDir(), "llama3-70b-tp8")
		wide.readMode, wide.machine = (options{direct: true, runOld: true, runNew: true}).readMode(), machineOf(GinkgoT().TempDir(), true, true)
		for _, r := range wide.results {
			r.reads = readBytes{v1: 100, v1Direct: 100, floor: 100, floorDirect: 50}
		}
		for _, line := range strings.Split(text+"\n"+wide.String(), "\n") {
			Expect(len([]rune(line))).To(BeNumerically("<=", 120), "line %q", line)
		}
		Expect(wide.String()).To(ContainSubstring("O_DIRECT, %"))
		Expect(text).To(ContainSubstring("write, MiB/s"))
		Expect(text).To(ContainSubstring("read, MiB/s"))
		Expect(text).NotTo(MatchRegexp(`KiB/s|GiB/s|%`), "a unit that is not its column's")
		Expect(text).To(ContainSubstring("speedup = old median time / new median time"))
		Expect(text).To(ContainSubstring("page cache"))

		r := sum.results[0]
		Expect(r.String()).To(ContainSubstring("x the floor's time"))
		Expect(r.String()).NotTo(ContainSubstring("% of floor"))
	})
})

// madeUpSummary is a summary of made-up timings for the presets names
// (default seed and llama3-8b), run in dir.
func madeUpSummary(dir string, names ...string) *summary {
	GinkgoHelper()
	if len(names) == 0 {
		names = []string{"seed", "llama3-8b"}
	}
	sum := &summary{flags: "-interface=both -perf-samples=3", machine: machineOf(dir, false, true)}
	for _, name := range names {
		p, ok := presetByName(name)
		Expect(ok).To(BeTrue())
		for _, sc := range scenarios {
			r := &result{preset: p, scenario: sc, title: sc.title(3), pages: sc.keys, samples: 3, timings: map[string][]time.Duration{}}
			for i, t := range []string{timeBatchSet, timeBatchGet, timeBatchSetV1, timeBatchGetV1, timePwrite, timePread} {
				base := time.Duration(sc.keys*(6-i)) * time.Millisecond
				r.timings[t] = []time.Duration{base, base * 3 / 2, base * 2 / 3}
			}
			sum.add(r)
		}
	}
	return sum
}

var _ = Describe("Latency charts of the Serving scenario", func() {
	It("draws a latency CDF", func() {
		path := filepath.Join(GinkgoT().TempDir(), "latency.png")
		series := map[string][]time.Duration{"old": {}, "new": {}}
		for i := range 200 {
			series["old"] = append(series["old"], time.Duration(1000+i*i)*time.Microsecond)
			series["new"] = append(series["new"], time.Duration(300+i*i/2)*time.Microsecond)
		}
		files, err := plotCDF(path, "time to first token", "a caption", series)
		Expect(err).NotTo(HaveOccurred())
		Expect(files).To(Equal([]string{path, filepath.Join(filepath.Dir(path), "latency.svg")}))
		expectPNG(path, 7*chartDPI, 7*chartDPI)
		svg, err := os.ReadFile(filepath.Join(filepath.Dir(path), "latency.svg"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(svg)).To(ContainSubstring("a caption"))
		Expect(string(svg)).To(ContainSubstring("fraction of batch calls"))

		_, err = plotCDF(path, "nothing", "", map[string][]time.Duration{"old": nil})
		Expect(err).To(MatchError(ContainSubstring("no values")))
	})
})

// expectPNG checks that path is a PNG at most maxW by maxH pixels and not
// empty.
func expectPNG(path string, maxW, maxH int) {
	GinkgoHelper()
	f, err := os.Open(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	Expect(err).NotTo(HaveOccurred())
	Expect(cfg.Width).To(BeNumerically(">", 100))
	Expect(cfg.Width).To(BeNumerically("<=", maxW))
	Expect(cfg.Height).To(BeNumerically(">", 100))
	Expect(cfg.Height).To(BeNumerically("<=", maxH))
}
