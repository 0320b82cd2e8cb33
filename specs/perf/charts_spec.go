package perf

import (
	"image/png"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The charts are specs of their own, on made-up timings, so that the normal
// suite checks they are drawn without running the perf specs.
var _ = Describe("Charts of the performance comparison", func() {
	It("draws each preset's throughput and speedup, as PNG and SVG", func() {
		dir := GinkgoT().TempDir()
		sum := &summary{}
		for _, name := range []string{"seed", "llama3-8b"} {
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
			}
		}
	})

	It("draws a latency CDF", func() {
		path := filepath.Join(GinkgoT().TempDir(), "latency.png")
		series := map[string][]time.Duration{"old": {}, "new": {}}
		for i := range 200 {
			series["old"] = append(series["old"], time.Duration(1000+i*i)*time.Microsecond)
			series["new"] = append(series["new"], time.Duration(300+i*i/2)*time.Microsecond)
		}
		files, err := plotCDF(path, "time to first token", series)
		Expect(err).NotTo(HaveOccurred())
		Expect(files).To(Equal([]string{path, filepath.Join(filepath.Dir(path), "latency.svg")}))
		expectPNG(path, 7*chartDPI, 7*chartDPI)

		_, err = plotCDF(path, "nothing", map[string][]time.Duration{"old": nil})
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
