package hicachefile

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

var _ = Describe("SGLang compatibility", func() {
	DescribeTable("names the old-format file key + suffix + .bin, as SGLang does",
		func(cfg hicachefile.Config, key, want string) {
			cfg.Dir = GinkgoT().TempDir()
			s := mustStore(cfg, nil)
			Expect(s.FilePath(key)).To(Equal(filepath.Join(cfg.Dir, want)))
			Expect(want).To(Equal(key + sgname.Suffix(cfg) + ".bin"))
			Expect(s.Set(key, []byte("page"))).To(Succeed())
			Expect(filepath.Join(cfg.Dir, want)).To(BeARegularFile())
		},
		Entry("MHA, DOMAIN.md's example", hicachefile.Config{ModelName: "meta-llama/Llama-3-8B"}, "abc123", "abc123_meta-llama-Llama-3-8B_0_1.bin"),
		Entry("MHA, TP rank 3 of 8", hicachefile.Config{ModelName: "org/sub/m", TPRank: 3, TPSize: 8}, "ff00", "ff00_org-sub-m_3_8.bin"),
		Entry("MHA, TP and PP", hicachefile.Config{ModelName: "org/m", TPRank: 3, TPSize: 8, PPRank: 2, PPSize: 4}, "k1", "k1_org-m_3_8_4_2.bin"),
		Entry("MHA, PP size 1 leaves PP out", hicachefile.Config{ModelName: "m", TPRank: 1, TPSize: 2, PPSize: 1}, "k", "k_m_1_2.bin"),
		Entry("MLA leaves TP out", hicachefile.Config{ModelName: "deepseek-ai/DeepSeek-V3", TPRank: 3, TPSize: 8, IsMLA: true}, "abc", "abc_deepseek-ai-DeepSeek-V3.bin"),
		Entry("MLA with PP", hicachefile.Config{ModelName: "deepseek-ai/DeepSeek-V3", TPRank: 3, TPSize: 8, PPRank: 1, PPSize: 2, IsMLA: true}, "abc", "abc_deepseek-ai-DeepSeek-V3_2_1.bin"),
	)

	DescribeTable("reads SGLang's .bin files through both interfaces, byte-exact",
		func(kind hostcache.Kind, layout hostcache.Layout) {
			pc := specShape.Of(kind, layout, hostcache.Float16)
			src, dst := mustPool(pc), mustPool(pc)
			cfg := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "org/model", TPRank: 1, TPSize: 4, IsMLA: kind == hostcache.MLA}
			s := mustStore(cfg, dst)
			const n = 3
			from := mustAlloc(src, n)
			fillRandom(src, from)
			want := dataPages(src, from)
			keys := keysN("sgl", n)

			// The old interface writes exactly GetDataPage's bytes.
			Expect(s.Set(keys[0], want[0])).To(Succeed())
			Expect(os.ReadFile(s.FilePath(keys[0]))).To(Equal(want[0]))
			// SGLang's Python wrote the others: just the flat page bytes.
			for i := 1; i < n; i++ {
				Expect(os.WriteFile(filepath.Join(cfg.Dir, keys[i]+sgname.Suffix(cfg)+".bin"), want[i], 0o644)).To(Succeed())
			}
			Expect(s.BatchExists(keys)).To(Equal(n))
			for _, k := range keys {
				_, inV1 := s.Locate(k)
				Expect(inV1).To(BeFalse())
			}

			mustAlloc(dst, 2)
			to := mustAlloc(dst, n)
			ok, err := s.BatchGetV1(keys, to)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(n)))
			Expect(dataPages(dst, to)).To(Equal(want))
			Expect(s.Stats().Hits).To(BeEquivalentTo(n))

			got := dst.GetDummyFlatDataPage()
			Expect(s.Get(keys[n-1], got)).To(Succeed())
			Expect(got).To(Equal(want[n-1]))
		},
		func(kind hostcache.Kind, layout hostcache.Layout) string { return kind.String() + " " + string(layout) },
		kindLayoutEntries(),
	)

	It("reads MHA layer_first .bin files in flat order, which is not pointer order", func() {
		p := mustPool(specShape.Of(hostcache.MHA, hostcache.LayerFirst, hostcache.Float16))
		s := mustStore(hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "m"}, p)
		from := mustAlloc(p, 1)
		fillRandom(p, from)
		flat, err := p.GetDataPage(from[0])
		Expect(err).NotTo(HaveOccurred())
		Expect(flat).NotTo(Equal(pointerOrderBytes(p, from)))
		Expect(s.Set("flat", flat)).To(Succeed())

		to := mustAlloc(p, 1)
		ok, err := s.BatchGetV1([]string{"flat"}, to)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(Equal([]bool{true}))
		Expect(p.GetDataPage(to[0])).To(Equal(flat))
		Expect(pointerOrderBytes(p, to)).To(Equal(pointerOrderBytes(p, from)))
	})
})
