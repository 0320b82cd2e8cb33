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

var _ = Describe("context-parallel ranks (SGLang's attn_cp_rank, attn_cp_size)", func() {
	DescribeTable("name files with _cp{rank}_{size} after the PP part, through both interfaces",
		func(cfg hicachefile.Config, key, want string) {
			kind := hostcache.MHA
			if cfg.IsMLA {
				kind = hostcache.MLA
			}
			p := mustPool(specShape.Of(kind, hostcache.PageFirst, hostcache.Float16))
			cfg.Dir = GinkgoT().TempDir()
			s := mustStore(cfg, p)
			Expect(want).To(Equal(key + sgname.Suffix(cfg) + ".bin"))
			Expect(s.FilePath(key)).To(Equal(filepath.Join(cfg.Dir, want)))
			from := mustAlloc(p, 1)
			fillRandom(p, from)
			flat := dataPages(p, from)[0]
			Expect(s.Set(key, flat)).To(Succeed())
			Expect(os.ReadFile(filepath.Join(cfg.Dir, want))).To(Equal(flat))

			ok, err := s.BatchSetV1([]string{key + "v1"}, from)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(1)))
			batches := batchFiles(sgname.V1Dir(cfg))
			Expect(batches).To(HaveLen(1))
			Expect(filepath.Base(batches[0])).To(HaveSuffix(sgname.Suffix(cfg) + ".batch.bin"))
		},
		Entry("TP and CP", hicachefile.Config{ModelName: "org/m", TPRank: 3, TPSize: 8, CPRank: 1, CPSize: 2}, "k", "k_org-m_3_8_cp1_2.bin"),
		Entry("TP, PP and CP", hicachefile.Config{ModelName: "org/m", TPRank: 3, TPSize: 8, PPRank: 1, PPSize: 2, CPRank: 3, CPSize: 4}, "k", "k_org-m_3_8_2_1_cp3_4.bin"),
		Entry("MLA and CP", hicachefile.Config{ModelName: "deepseek-ai/DeepSeek-V3", TPRank: 3, TPSize: 8, IsMLA: true, CPRank: 0, CPSize: 2}, "abc", "abc_deepseek-ai-DeepSeek-V3_cp0_2.bin"),
		Entry("MLA, PP and CP", hicachefile.Config{ModelName: "d/v3", IsMLA: true, PPRank: 0, PPSize: 2, CPRank: 1, CPSize: 2}, "abc", "abc_d-v3_2_0_cp1_2.bin"),
		Entry("CP size 1 leaves CP out", hicachefile.Config{ModelName: "m", TPRank: 1, TPSize: 2, CPSize: 1}, "k", "k_m_1_2.bin"),
		Entry("an empty model name", hicachefile.Config{CPRank: 1, CPSize: 3}, "k", "k__0_1_cp1_3.bin"),
	)

	It("never lets two CP ranks share a file, so neither reads the other's slice", func() {
		dir := GinkgoT().TempDir()
		p := mustPool(specShape.Of(hostcache.MLA, hostcache.PageFirst, hostcache.BFloat16))
		var stores [2]*hicachefile.Store
		var want [2][]byte
		for r := range stores {
			stores[r] = mustStore(hicachefile.Config{Dir: dir, ModelName: "d/v3", IsMLA: true, CPRank: r, CPSize: 2}, p)
			from := mustAlloc(p, 1)
			fillRandom(p, from)
			want[r] = dataPages(p, from)[0]
			Expect(stores[r].Set("same", want[r])).To(Succeed())
			ok, err := stores[r].BatchSetV1([]string{"samev1"}, from)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(1)))
		}
		Expect(stores[0].FilePath("same")).NotTo(Equal(stores[1].FilePath("same")))
		for r, s := range stores {
			got := p.GetDummyFlatDataPage()
			Expect(s.Get("same", got)).To(Succeed())
			Expect(got).To(Equal(want[r]))
			to := mustAlloc(p, 1)
			ok, err := s.BatchGetV1([]string{"samev1"}, to)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(1)))
			Expect(dataPages(p, to)[0]).To(Equal(want[r]))
		}
	})

	It("refuses a CP rank outside [0, CPSize)", func() {
		for _, cfg := range []hicachefile.Config{{CPRank: 2, CPSize: 2}, {CPRank: -1, CPSize: 2}, {CPSize: -2}} {
			Expect(cfg.Validate()).To(MatchError(hicachefile.ErrInvalidConfig))
		}
	})
})
