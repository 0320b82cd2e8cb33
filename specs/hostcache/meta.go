package hostcache

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// The seed's test_get_page_buffer_meta_mha and _mla, against the real pool
// layouts rather than the seed's mock (which put K and V side by side).

var _ = Describe("get_page_buffer_meta under MHA", func() {
	metaSpecs(hostcache.MHA, mhaLayouts)

	DescribeTable("puts each V buffer v_offset = L*size*H*D*itemsize after its K",
		func(layout hostcache.Layout, dt hostcache.DType) {
			m := getMeta(hostcache.MHA, layout, dt)
			vOffset := uintptr(layers * slots * heads * headDim * m.it)
			Expect(len(m.ptrs) % 2).To(BeZero())
			for i := 0; i < len(m.ptrs); i += 2 {
				Expect(m.ptrs[i+1]).To(Equal(m.ptrs[i]+vOffset), "buffer %d", i+1)
				Expect(m.sizes[i+1]).To(Equal(m.sizes[i]), "buffer %d", i+1)
			}
		},
		layoutEntries(mhaLayouts))
})

var _ = Describe("get_page_buffer_meta under MLA", func() {
	metaSpecs(hostcache.MLA, mlaLayouts)
})

// meta is one GetPageBufferMeta call on a full pool, for metaPages.
type meta struct {
	p     *hostcache.Pool
	it    int
	base  uintptr
	n     int // bytes of pool memory
	ptrs  []uintptr
	sizes []int
}

func getMeta(kind hostcache.Kind, layout hostcache.Layout, dt hostcache.DType) meta {
	GinkgoHelper()
	p := newFullPool(specShape.Of(kind, layout, dt))
	m := meta{p: p, it: itemSize(dt)}
	m.base, m.n = p.Region()
	Expect(m.base).NotTo(BeZero())
	var err error
	m.ptrs, m.sizes, err = p.GetPageBufferMeta(metaPages())
	Expect(err).NotTo(HaveOccurred())
	return m
}

// wantPerPage is the number of buffers per page, from DOMAIN.md.
func wantPerPage(kind hostcache.Kind, layout hostcache.Layout) int {
	n := 1
	if layout == hostcache.LayerFirst {
		n = layers
	}
	if kind == hostcache.MHA {
		n *= 2
	}
	return n
}

// metaSpecs declares the get_page_buffer_meta specs both kinds share.
func metaSpecs(kind hostcache.Kind, layouts []hostcache.Layout) {
	count := "lists two buffers per page, [k, v], and 2*LayerNum for layer_first"
	if kind == hostcache.MLA {
		count = "lists one buffer per page, and LayerNum for layer_first"
	}
	DescribeTable(count,
		func(layout hostcache.Layout, dt hostcache.DType) {
			m := getMeta(kind, layout, dt)
			per := wantPerPage(kind, layout)
			Expect(m.p.BuffersPerPage()).To(Equal(per))
			Expect(m.ptrs).To(HaveLen(2 * per)) // metaPages is two pages
			Expect(m.sizes).To(HaveLen(2 * per))
		},
		layoutEntries(layouts))

	DescribeTable("gives every buffer its size",
		func(layout hostcache.Layout, dt hostcache.DType) {
			m := getMeta(kind, layout, dt)
			want := pageSize * heads * headDim * m.it // ps*H*D*it
			if kind == hostcache.MLA {
				want = pageSize * rowMLA * m.it // ps*R*it
			}
			if layout != hostcache.LayerFirst {
				want *= layers // L*ps*...
			}
			Expect(m.sizes).To(HaveEach(want))
			total := 0
			for _, s := range m.sizes {
				total += s
			}
			Expect(total).To(Equal(2*pageBytes(kind, m.it)), "the buffers of two pages add up to two pages")
		},
		layoutEntries(layouts))

	DescribeTable("keeps every buffer inside the pool's memory, without overlap",
		func(layout hostcache.Layout, dt hostcache.DType) {
			m := getMeta(kind, layout, dt)
			Expect(m.n).To(Equal(pages*pageBytes(kind, m.it)), "Region's size")
			// Gomega compares uint64, not uintptr.
			base, end := uint64(m.base), uint64(m.base)+uint64(m.n)
			for i, ptr := range m.ptrs {
				Expect(uint64(ptr)).To(BeNumerically(">=", base), "buffer %d", i)
				Expect(uint64(ptr)+uint64(m.sizes[i])).To(BeNumerically("<=", end), "buffer %d", i)
				for j := range i {
					disjoint := ptr+uintptr(m.sizes[i]) <= m.ptrs[j] || m.ptrs[j]+uintptr(m.sizes[j]) <= ptr
					Expect(disjoint).To(BeTrue(), "buffers %d and %d overlap", j, i)
				}
			}
		},
		layoutEntries(layouts))

	DescribeTable("follows DOMAIN.md's pointer formulas, page by page in the order asked",
		func(layout hostcache.Layout, dt hostcache.DType) {
			m := getMeta(kind, layout, dt)
			var wantOffs, wantSizes []int
			for _, pg := range []int{middlePage, otherPage} {
				o, s := wantMeta(kind, layout, m.it, pg*pageSize)
				wantOffs = append(wantOffs, o...)
				wantSizes = append(wantSizes, s...)
			}
			offs := make([]int, len(m.ptrs))
			for i, ptr := range m.ptrs {
				offs[i] = int(ptr - m.base)
			}
			Expect(offs).To(Equal(wantOffs))
			Expect(m.sizes).To(Equal(wantSizes))
		},
		layoutEntries(layouts))

	DescribeTable("hands out the same buffers as slices from PageBuffers",
		func(layout hostcache.Layout, dt hostcache.DType) {
			m := getMeta(kind, layout, dt)
			bufs, err := m.p.PageBuffers(metaPages())
			Expect(err).NotTo(HaveOccurred())
			Expect(bufs).To(HaveLen(len(m.ptrs)))
			for i, b := range bufs {
				Expect(addr(b)).To(Equal(m.ptrs[i]), "buffer %d", i)
				Expect(b).To(HaveLen(m.sizes[i]), "buffer %d", i)
				Expect(cap(b)).To(Equal(m.sizes[i]), "buffer %d: append must not run into its neighbour", i)
			}
		},
		layoutEntries(layouts))

	DescribeTable("shows bytes written through the buffers at their place in GetDataPage",
		func(layout hostcache.Layout, dt hostcache.DType) {
			m := getMeta(kind, layout, dt)
			idx := metaPages()[:pageSize] // the middle page alone
			bufs, err := m.p.PageBuffers(idx)
			Expect(err).NotTo(HaveOccurred())
			want := make([]byte, pageBytes(kind, m.it))
			for j, b := range bufs {
				copy(b, randomBytes(len(b), uint64(j)))
				copy(want[flatOffset(kind, layout, m.it, j):], b)
			}
			Expect(m.p.GetDataPage(idx[0])).To(Equal(want))

			zero := make([]byte, len(want))
			for _, pg := range []int{middlePage - 1, middlePage + 1} {
				Expect(m.p.GetDataPage(int64(pg*pageSize))).To(Equal(zero), "neighbouring page %d", pg)
			}
		},
		layoutEntries(layouts))
}
