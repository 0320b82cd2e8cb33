package hostcache

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

var _ = Describe("a locked pool", func() {
	It("is mlocked and usable, or New says RLIMIT_MEMLOCK refused", func() {
		cfg := specShape.Of(hostcache.MLA, hostcache.PageFirst, hostcache.BFloat16)
		cfg.Lock = true
		p, err := hostcache.New(cfg)
		if err != nil {
			// Without CAP_IPC_LOCK a low memlock limit may refuse even a
			// small pool; the error must say what to raise.
			Expect(err.Error()).To(ContainSubstring("RLIMIT_MEMLOCK"))
			Expect(p).To(BeNil())
			return
		}
		DeferCleanup(p.Close)
		idx, err := p.Alloc(pageSize)
		Expect(err).NotTo(HaveOccurred())
		page := randomBytes(p.PageBytes(), 5)
		Expect(p.SetFromFlatDataPage(idx[0], page)).To(Succeed())
		Expect(p.GetDataPage(idx[0])).To(Equal(page))
	})
})
