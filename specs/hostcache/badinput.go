package hostcache

import (
	"math"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// Bad input is an error wrapping one of the package's Err values, never a
// panic, and a call that fails changes nothing.

// noPanic runs call and returns its error, failing the spec if it panics.
func noPanic(call func() error) error {
	GinkgoHelper()
	var err error
	Expect(func() { err = call() }).NotTo(Panic())
	return err
}

var _ = Describe("bad host indices", Ordered, func() {
	var p *hostcache.Pool

	BeforeAll(func() {
		// A full pool: a Free that wrongly freed part of its input would
		// show in Available.
		p = newFullPool(specShape.Of(hostcache.MHA, hostcache.LayerFirst, hostcache.Float16))
	})

	DescribeTable("are rejected by every call that takes indices, and Free frees nothing",
		func(indices []int64, want error) {
			Expect(noPanic(func() error { _, _, err := p.GetPageBufferMeta(indices); return err })).To(MatchError(want), "GetPageBufferMeta")
			Expect(noPanic(func() error { _, err := p.PageBuffers(indices); return err })).To(MatchError(want), "PageBuffers")
			Expect(noPanic(func() error { _, err := p.FlatPageBuffers(indices); return err })).To(MatchError(want), "FlatPageBuffers")
			Expect(noPanic(func() error { return p.Free(indices) })).To(MatchError(want), "Free")
			Expect(p.Available()).To(BeZero(), "Free freed part of its input")
		},
		Entry("an index count that is not a multiple of PageSize", []int64{12, 13, 14}, hostcache.ErrBadIndices),
		Entry("a whole page and a stray slot", []int64{12, 13, 14, 15, 16}, hostcache.ErrBadIndices),
		Entry("a page group that is not consecutive", []int64{12, 13, 15, 14}, hostcache.ErrBadIndices),
		Entry("a good page, then a group that is not consecutive", []int64{4, 5, 6, 7, 12, 13, 14, 16}, hostcache.ErrBadIndices),
		Entry("a group that does not start on a page boundary", []int64{13, 14, 15, 16}, hostcache.ErrBadIndices),
		Entry("a negative slot", []int64{-4, -3, -2, -1}, hostcache.ErrOutOfRange),
		Entry("a slot just past the end", []int64{slots, slots + 1, slots + 2, slots + 3}, hostcache.ErrOutOfRange),
		Entry("a good page, then one past the end", []int64{20, 21, 22, 23, slots, slots + 1, slots + 2, slots + 3}, hostcache.ErrOutOfRange),
		Entry("the largest slot numbers", []int64{math.MaxInt64 - 3, math.MaxInt64 - 2, math.MaxInt64 - 1, math.MaxInt64}, hostcache.ErrOutOfRange),
	)

	DescribeTable("are rejected as a page start by GetDataPage and SetFromFlatDataPage",
		func(index int64, want error) {
			Expect(noPanic(func() error { _, err := p.GetDataPage(index); return err })).To(MatchError(want), "GetDataPage")
			page := randomBytes(p.PageBytes(), 3)
			Expect(noPanic(func() error { return p.SetFromFlatDataPage(index, page) })).To(MatchError(want), "SetFromFlatDataPage")
		},
		Entry("a slot inside a page", int64(13), hostcache.ErrBadIndices),
		Entry("a negative slot", int64(-4), hostcache.ErrOutOfRange),
		Entry("the slot just past the end", int64(slots), hostcache.ErrOutOfRange),
		Entry("the smallest int64", int64(math.MinInt64), hostcache.ErrOutOfRange),
		Entry("the largest page-aligned int64", int64(math.MaxInt64-3), hostcache.ErrOutOfRange),
	)

	DescribeTable("SetFromFlatDataPage rejects a flat page of the wrong length with ErrPageLength, writing nothing",
		func(delta int) {
			idx := int64(middlePage * pageSize)
			before, err := p.GetDataPage(idx)
			Expect(err).NotTo(HaveOccurred())
			var page []byte
			if n := p.PageBytes() + delta; n >= 0 {
				page = randomBytes(n, 4)
			}
			Expect(noPanic(func() error { return p.SetFromFlatDataPage(idx, page) })).To(MatchError(hostcache.ErrPageLength))
			Expect(p.GetDataPage(idx)).To(Equal(before))
		},
		Entry("one byte short", -1),
		Entry("one byte long", 1),
		Entry("one element (fp16) short", -2),
		Entry("two pages", pageBytes(hostcache.MHA, 2)),
		Entry("nil", math.MinInt),
	)
})

var _ = Describe("Free", Ordered, func() {
	var p *hostcache.Pool

	BeforeAll(func() {
		var err error
		p, err = hostcache.New(specShape.Of(hostcache.MHA, hostcache.PageFirst, hostcache.Float16))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Close)
	})

	// Each spec gives back what it took, so that the next starts with an
	// empty pool.
	AfterEach(func() { Expect(p.Available()).To(Equal(slots)) })

	It("returns ErrDoubleFree for a page that is free, and frees nothing", func() {
		held, err := p.Alloc(2 * pageSize)
		Expect(err).NotTo(HaveOccurred())
		free := pageSlots(pages - 1) // Alloc hands out low pages first
		Expect(held).NotTo(ContainElement(free[0]))

		err = noPanic(func() error { return p.Free(append(held[:pageSize:pageSize], free...)) })
		Expect(err).To(MatchError(hostcache.ErrDoubleFree))
		Expect(p.Available()).To(Equal(slots - 2*pageSize))
		Expect(p.Free(held)).To(Succeed(), "the allocated page before the free one must still be allocated")
	})

	It("returns ErrDoubleFree for a page named twice in one call, and frees nothing", func() {
		held, err := p.Alloc(pageSize)
		Expect(err).NotTo(HaveOccurred())
		err = noPanic(func() error { return p.Free(append(append([]int64{}, held...), held...)) })
		Expect(err).To(MatchError(hostcache.ErrDoubleFree))
		Expect(p.Available()).To(Equal(slots - pageSize))
		Expect(p.Free(held)).To(Succeed())
	})

	It("returns ErrDoubleFree for a page freed a second time", func() {
		held, err := p.Alloc(pageSize)
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Free(held)).To(Succeed())
		Expect(noPanic(func() error { return p.Free(held) })).To(MatchError(hostcache.ErrDoubleFree))
		Expect(p.Available()).To(Equal(slots))
	})

	It("accepts no indices at all", func() {
		Expect(p.Free(nil)).To(Succeed())
	})
})

var _ = Describe("Alloc", Ordered, func() {
	var p *hostcache.Pool

	BeforeAll(func() {
		var err error
		p, err = hostcache.New(specShape.Of(hostcache.MLA, hostcache.PageFirstDirect, hostcache.Float8E4M3))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Close)
	})

	AfterEach(func() { Expect(p.Available()).To(Equal(slots)) })

	It("hands out whole, distinct pages: PageSize consecutive slots from a page boundary", func() {
		all, err := p.Alloc(slots)
		Expect(err).NotTo(HaveOccurred())
		Expect(all).To(HaveLen(slots))
		seen := map[int64]bool{}
		for i := 0; i < len(all); i += pageSize {
			Expect(all[i] % pageSize).To(BeZero())
			Expect(seen[all[i]]).To(BeFalse(), "page at slot %d handed out twice", all[i])
			seen[all[i]] = true
			for j := 1; j < pageSize; j++ {
				Expect(all[i+j]).To(Equal(all[i] + int64(j)))
			}
		}
		Expect(p.Available()).To(BeZero())
		Expect(p.Free(all)).To(Succeed())
	})

	It("returns ErrNoSpace when asked for more than is free, and allocates nothing", func() {
		held, err := p.Alloc(2 * pageSize)
		Expect(err).NotTo(HaveOccurred())
		avail := p.Available()
		Expect(avail).To(Equal(slots - 2*pageSize))

		var got []int64
		err = noPanic(func() error { got, err = p.Alloc(avail + pageSize); return err })
		Expect(err).To(MatchError(hostcache.ErrNoSpace))
		Expect(got).To(BeNil())
		Expect(p.Available()).To(Equal(avail))

		rest, err := p.Alloc(avail)
		Expect(err).NotTo(HaveOccurred(), "everything free is still allocatable")
		Expect(p.Free(append(held, rest...))).To(Succeed())
	})

	DescribeTable("returns ErrBadIndices for a count that is not a positive multiple of PageSize",
		func(need int) {
			var got []int64
			err := noPanic(func() (err error) { got, err = p.Alloc(need); return err })
			Expect(err).To(MatchError(hostcache.ErrBadIndices))
			Expect(got).To(BeNil())
		},
		Entry("one slot short of a page", pageSize-1),
		Entry("a page and a slot", pageSize+1),
		Entry("zero", 0),
		Entry("a negative page", -pageSize),
		Entry("the smallest int", math.MinInt),
	)
})

var _ = Describe("a closed pool", Ordered, func() {
	var (
		p    *hostcache.Pool
		held []int64
	)

	BeforeAll(func() {
		var err error
		p, err = hostcache.New(specShape.Of(hostcache.MHA, hostcache.PageHead, hostcache.Float32))
		Expect(err).NotTo(HaveOccurred())
		held, err = p.Alloc(2 * pageSize)
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Close()).To(Succeed())
	})

	DescribeTable("returns ErrClosed from every call",
		func(call func() error) {
			Expect(noPanic(call)).To(MatchError(hostcache.ErrClosed))
		},
		Entry("GetDataPage", func() error { _, err := p.GetDataPage(held[0]); return err }),
		Entry("SetFromFlatDataPage", func() error { return p.SetFromFlatDataPage(held[0], make([]byte, p.PageBytes())) }),
		Entry("SetFromFlatDataPage with a page of the wrong length", func() error { return p.SetFromFlatDataPage(held[0], nil) }),
		Entry("GetPageBufferMeta", func() error { _, _, err := p.GetPageBufferMeta(held); return err }),
		Entry("PageBuffers", func() error { _, err := p.PageBuffers(held); return err }),
		Entry("FlatPageBuffers", func() error { _, err := p.FlatPageBuffers(held); return err }),
		Entry("Alloc", func() error { _, err := p.Alloc(pageSize); return err }),
		Entry("Free", func() error { return p.Free(held) }),
		Entry("a second Close", func() error { return p.Close() }),
	)

	It("reports no memory from Region", func() {
		base, n := p.Region()
		Expect(base).To(BeZero())
		Expect(n).To(BeZero())
	})
})
