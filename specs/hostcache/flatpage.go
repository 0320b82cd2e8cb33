package hostcache

import (
	"bytes"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// The old copy interface the seed compares against: get_data_page and
// set_from_flat_data_page, which the file backend's .bin files hold verbatim.

var _ = Describe("flat data page", func() {
	DescribeTable("SetFromFlatDataPage then GetDataPage gives the same bytes, and the neighbours stay zero",
		func(kind hostcache.Kind, layout hostcache.Layout, dt hostcache.DType) {
			p := newFullPool(specShape.Of(kind, layout, dt))
			page := randomBytes(pageBytes(kind, itemSize(dt)), 1)
			Expect(p.SetFromFlatDataPage(middlePage*pageSize, page)).To(Succeed())
			Expect(p.GetDataPage(middlePage * pageSize)).To(Equal(page))

			zero := make([]byte, len(page))
			for pg := range pages {
				if pg != middlePage {
					Expect(p.GetDataPage(int64(pg*pageSize))).To(Equal(zero), "page %d", pg)
				}
			}
		},
		kindLayoutEntries())

	DescribeTable("keeps every page's own bytes when all pages are written",
		func(kind hostcache.Kind, layout hostcache.Layout, dt hostcache.DType) {
			p := newFullPool(specShape.Of(kind, layout, dt))
			n := pageBytes(kind, itemSize(dt))
			written := make([][]byte, pages)
			for pg := range pages {
				written[pg] = randomBytes(n, uint64(100+pg))
				Expect(p.SetFromFlatDataPage(int64(pg*pageSize), written[pg])).To(Succeed())
			}
			for pg := range pages {
				Expect(p.GetDataPage(int64(pg*pageSize))).To(Equal(written[pg]), "page %d", pg)
			}
		},
		kindLayoutEntries())

	DescribeTable("FlatPageBuffers, concatenated, are GetDataPage's bytes",
		func(kind hostcache.Kind, layout hostcache.Layout, dt hostcache.DType) {
			p := newFullPool(specShape.Of(kind, layout, dt))
			idx := pageSlots(middlePage)
			Expect(p.SetFromFlatDataPage(idx[0], randomBytes(pageBytes(kind, itemSize(dt)), 2))).To(Succeed())
			flat, err := p.FlatPageBuffers(idx)
			Expect(err).NotTo(HaveOccurred())
			Expect(flat).To(HaveLen(wantPerPage(kind, layout)))
			Expect(p.GetDataPage(idx[0])).To(Equal(bytes.Join(flat, nil)))

			// The same buffers as PageBuffers, only listed in flat order.
			ptr, err := p.PageBuffers(idx)
			Expect(err).NotTo(HaveOccurred())
			addrs := func(bufs [][]byte) []uintptr {
				out := make([]uintptr, len(bufs))
				for i, b := range bufs {
					out[i] = addr(b)
				}
				return out
			}
			Expect(addrs(flat)).To(ConsistOf(addrs(ptr)))
		},
		kindLayoutEntries())

	DescribeTable("GetDummyFlatDataPage is a fresh zeroed page of PageBytes",
		func(kind hostcache.Kind, layout hostcache.Layout, dt hostcache.DType) {
			p := newFullPool(specShape.Of(kind, layout, dt))
			n := pageBytes(kind, itemSize(dt))
			Expect(p.PageBytes()).To(Equal(n))
			a := p.GetDummyFlatDataPage()
			Expect(a).To(Equal(make([]byte, n)))
			a[0] = 1
			Expect(p.GetDummyFlatDataPage()[0]).To(BeZero(), "each call returns a new buffer")
			Expect(p.SetFromFlatDataPage(0, a)).To(Succeed(), "it fits SetFromFlatDataPage")
		},
		kindLayoutEntries())
})
