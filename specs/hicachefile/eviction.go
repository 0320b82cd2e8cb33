package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

// Eviction as SGLang's LRUFileEvictor configures it (storage/file/
// lru_file_evictor.py at 09d1a69): sizes read by human_readable_int,
// eviction down to max_size x eviction_ratio, only the owner writing.

var _ = Describe("eviction settings as SGLang spells them", func() {
	DescribeTable("ParseSize reads sizes as SGLang's human_readable_int",
		func(in string, want int64, valid bool) {
			got, err := hicachefile.ParseSize(in)
			if valid {
				Expect(err).NotTo(HaveOccurred())
			} else {
				Expect(err).To(MatchError(hicachefile.ErrInvalidConfig))
			}
			Expect(got).To(Equal(want))
		},
		Entry("SI k is 10^3", "1k", int64(1000), true),
		Entry("IEC Ki is 2^10", "1Ki", int64(1024), true),
		Entry("SI with decimals", "25.6k", int64(25600), true),
		Entry("IEC with decimals is invalid", "1.5Gi", int64(0), false),
		Entry("SI G", "200G", int64(200_000_000_000), true),
		Entry("IEC Ti", "3Ti", int64(3<<40), true),
		Entry("SI M is 10^6, not 2^20", "1M", int64(1_000_000), true),
		Entry("0 disables", "0", int64(0), true),
		Entry("empty disables", "", int64(0), true),
		Entry("a plain integer", "1048576", int64(1048576), true),
		Entry("not a size", "abc", int64(0), false),
		Entry("suffixes are case-sensitive", "1K", int64(0), false),
		Entry("no B after the suffix", "1GiB", int64(0), false),
	)

	It("evicts, once over MaxBytes, down to MaxBytes x EvictionRatio", func() {
		p := mustPool(specShape.Of(hostcache.MHA, hostcache.PageFirst, hostcache.Float16))
		n := int64(p.PageBytes())
		dir := GinkgoT().TempDir()
		s := mustStore(hicachefile.Config{Dir: dir, ModelName: "m", MaxBytes: 10 * n, EvictionRatio: 0.5}, nil)
		page := make([]byte, n)
		keys := keysN("e", 11)
		for _, k := range keys[:10] {
			Expect(s.Set(k, page)).To(Succeed())
		}
		Expect(s.Stats().Evicted).To(BeZero(), "at the bound, nothing goes")
		Expect(s.Set(keys[10], page)).To(Succeed())
		Expect(s.Stats().Evicted).To(BeEquivalentTo(6), "11 pages over a bound of 10 go down to 10 x 0.5")
		Expect(s.BatchExists(keys[6:])).To(Equal(5))
		files, err := filepath.Glob(filepath.Join(dir, "*_m_0_1.bin"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).To(HaveLen(5))

		// The default ratio is 0.9.
		d := mustStore(hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "m", MaxBytes: 10 * n}, nil)
		for _, k := range keys {
			Expect(d.Set(k, page)).To(Succeed())
		}
		Expect(d.Stats().Evicted).To(BeEquivalentTo(2), "11 pages over a bound of 10 go down to 9")
	})

	It("refuses a page larger than MaxBytes, and lets only the storage owner write while eviction is on", func() {
		p := mustPool(specShape.Of(hostcache.MLA, hostcache.PageFirst, hostcache.BFloat16))
		from := mustAlloc(p, 1)
		fillRandom(p, from)
		page := dataPages(p, from)[0]
		dir := GinkgoT().TempDir()

		tiny := mustStore(hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "m", MaxBytes: int64(len(page) - 1)}, p)
		Expect(tiny.Set("big", page)).To(MatchError(hicachefile.ErrRefused))
		ok, err := tiny.BatchSetV1([]string{"big"}, from)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(Equal([]bool{false}))

		// MLA: TP rank 0 owns the files every rank shares.
		owner := mustStore(hicachefile.Config{Dir: dir, ModelName: "m", IsMLA: true, TPSize: 2, MaxBytes: 1 << 30}, p)
		other := mustStore(hicachefile.Config{Dir: dir, ModelName: "m", IsMLA: true, TPRank: 1, TPSize: 2, MaxBytes: 1 << 30}, p)
		Expect(owner.Set("a", page)).To(Succeed())
		Expect(other.Set("b", page)).To(MatchError(hicachefile.ErrRefused))
		ok, err = other.BatchSetV1([]string{"c"}, from)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(Equal([]bool{false}))
		Expect(filepath.Join(dir, "b_m.bin")).NotTo(BeAnExistingFile())
		Expect(batchFiles(sgname.V1Dir(hicachefile.Config{Dir: dir, ModelName: "m", IsMLA: true}))).To(BeEmpty())
		got := p.GetDummyFlatDataPage()
		Expect(other.Get("a", got)).To(Succeed(), "a non-owner still reads")
		Expect(got).To(Equal(page))
		Expect(other.BatchExists([]string{"a"})).To(Equal(1))

		// Without eviction every rank writes.
		free := mustStore(hicachefile.Config{Dir: dir, ModelName: "m", IsMLA: true, TPRank: 1, TPSize: 2}, p)
		Expect(free.Set("d", page)).To(Succeed())
		_, err = os.Stat(filepath.Join(dir, fmt.Sprintf("%s_m.bin", "d")))
		Expect(err).NotTo(HaveOccurred())
	})
})
