package hostcache

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

var _ = Describe("get_page_buffer_meta under MHA", func() {
	It("returns two buffers per page for page_first", func() {
		p, err := hostcache.New(hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.Float16, PageSize: 4, Pages: 8, LayerNum: 2, HeadNum: 2, HeadDim: 4})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Close)
		idx, err := p.Alloc(8)
		Expect(err).NotTo(HaveOccurred())
		ptrs, sizes, err := p.GetPageBufferMeta(idx)
		Expect(err).NotTo(HaveOccurred())
		Expect(ptrs).To(HaveLen(4))
		Expect(sizes).To(HaveEach(2 * 4 * 2 * 4 * 2))
	})
})
