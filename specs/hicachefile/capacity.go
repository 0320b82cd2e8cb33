package hicachefile

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

// DOMAIN.md's first user report: with no eviction, the directory fills the
// disk. A store with MaxBytes stays within it, least recently used first.
var _ = Describe("Capacity", Ordered, func() {
	var p *hostcache.Pool
	BeforeAll(func() {
		p = mustPool(specShape.Of(hostcache.MHA, hostcache.PageFirst, hostcache.Float16))
	})

	It("keeps a store's batch files within MaxBytes, evicting the least recently used", func() {
		keys := keysN("k", 8) // all of one length, so all files of one size
		pageBytes := int64(p.PageBytes())
		file := pageBytes + hicachefile.IndexSize(keys[:1]) + hicachefile.IdentitySize("model") + hicachefile.TrailerSize
		cfg := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "model",
			MaxBatchFileBytes: pageBytes, MaxBytes: 4 * file, EvictionRatio: 1}
		s := mustStore(cfg, p)
		from := mustAlloc(p, 1)
		into := mustAlloc(p, 1)
		fillRandom(p, from)
		for i, k := range keys {
			ok, err := s.BatchSetV1([]string{k}, from)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal([]bool{true}))
			if i >= 1 {
				// Keep the first key in use: it must outlive the others.
				ok, err := s.BatchGetV1(keys[:1], into)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal([]bool{true}))
			}
			var total int64
			for _, f := range batchFiles(sgname.V1Dir(cfg)) {
				total += fileSize(f)
			}
			Expect(total).To(BeNumerically("<=", cfg.MaxBytes), "after writing %s", k)
		}
		Expect(s.Exists(keys[0])).To(BeTrue(), "the most recently read key was evicted")
		Expect(s.BatchExists(keys[5:])).To(Equal(3), "the newest keys were evicted")
		Expect(s.BatchExists(keys[1:2])).To(BeZero(), "an old, unread key survived")
		Expect(s.Stats().Evicted).To(BeEquivalentTo(4))

		ok, err := s.BatchGetV1(keys[1:2], into)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(Equal([]bool{false}), "an evicted page was served")
	})
})
