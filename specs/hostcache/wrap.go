package hostcache

import (
	"unsafe"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// mambaConfig is a Mamba-style component pool: ps slots per page, a
// temporal state of 96 bytes and a conv state of 40 bytes per slot.
func mambaConfig(ps int) hostcache.Config {
	return hostcache.Config{Kind: hostcache.Component, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
		PageSize: ps, Pages: pages, BufferBytes: [hostcache.MaxComponentBuffers]int{96, 40}}
}

// ownedMapping maps n bytes as SGLang maps its host pool (anonymous,
// private), owned by the spec: unmapped when the spec ends, after the pool
// wrapped over it is closed.
func ownedMapping(n int) []byte {
	GinkgoHelper()
	mem, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(unix.Munmap(mem)).To(Succeed()) })
	return mem
}

// allSlots returns every slot of a pool of cfg, in order.
func allSlots(cfg hostcache.Config) []int64 {
	idx := make([]int64, cfg.Pages*cfg.PageSize)
	for i := range idx {
		idx[i] = int64(i)
	}
	return idx
}

var _ = Describe("a pool over memory the store does not own (Wrap)", func() {
	DescribeTable("gives the same meta, relative to its base, as New's pool, and works on the owner's bytes in place",
		func(cfg hostcache.Config) {
			n, err := hostcache.New(cfg)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(n.Close)
			_, size := n.Region()
			mem := ownedMapping(size)
			base := uintptr(unsafe.Pointer(&mem[0]))
			w, err := hostcache.Wrap(cfg, unsafe.Pointer(&mem[0]), len(mem))
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { _ = w.Close() }) // before the unmap: cleanups run last-in first-out

			wb, wsize := w.Region()
			Expect(wb).To(Equal(base))
			Expect(wsize).To(Equal(size))
			Expect(w.PageBytes()).To(Equal(n.PageBytes()))
			Expect(w.BuffersPerPage()).To(Equal(n.BuffersPerPage()))

			idx := allSlots(cfg)
			nPtrs, nSizes, err := n.GetPageBufferMeta(idx)
			Expect(err).NotTo(HaveOccurred())
			wPtrs, wSizes, err := w.GetPageBufferMeta(idx)
			Expect(err).NotTo(HaveOccurred())
			Expect(wSizes).To(Equal(nSizes))
			nb, _ := n.Region()
			for i := range nPtrs {
				Expect(wPtrs[i]-base).To(Equal(nPtrs[i]-nb), "buffer %d", i)
			}

			// A flat page set through the wrapped pool lands in the owner's
			// memory where New's pool puts it.
			page := make([]byte, n.PageBytes())
			for i := range page {
				page[i] = byte(i*13 + 5)
			}
			first := int64(middlePage * cfg.PageSize)
			Expect(w.SetFromFlatDataPage(first, page)).To(Succeed())
			Expect(n.SetFromFlatDataPage(first, page)).To(Succeed())
			nAll, err := n.PageBuffers(idx)
			Expect(err).NotTo(HaveOccurred())
			off := 0
			for _, b := range nAll {
				// New's bytes at each buffer's offset equal the owner's bytes there.
				o := int(uintptr(unsafe.Pointer(&b[0])) - nb)
				Expect(mem[o : o+len(b)]).To(Equal(b))
				off += len(b)
			}
			Expect(off).To(Equal(size))
			got, err := w.GetDataPage(first)
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(page))

			// Close detaches the pool; the owner's memory stays mapped and intact.
			Expect(w.Close()).To(Succeed())
			Expect(mem[len(mem)-1:]).To(HaveLen(1))
			flat, err := n.FlatPageBuffers(idx[first : first+int64(cfg.PageSize)])
			Expect(err).NotTo(HaveOccurred())
			o := int(uintptr(unsafe.Pointer(&flat[0][0])) - nb)
			Expect(mem[o : o+len(flat[0])]).To(Equal(flat[0]))
		},
		Entry("MHA layer_first", specShape.Of(hostcache.MHA, hostcache.LayerFirst, hostcache.BFloat16)),
		Entry("MHA page_first", specShape.Of(hostcache.MHA, hostcache.PageFirst, hostcache.BFloat16)),
		Entry("MHA page_first_direct", specShape.Of(hostcache.MHA, hostcache.PageFirstDirect, hostcache.Float16)),
		Entry("MHA page_head", specShape.Of(hostcache.MHA, hostcache.PageHead, hostcache.Float32)),
		Entry("MLA layer_first", specShape.Of(hostcache.MLA, hostcache.LayerFirst, hostcache.BFloat16)),
		Entry("MLA page_first", specShape.Of(hostcache.MLA, hostcache.PageFirst, hostcache.Float8E4M3)),
		Entry("MLA page_first_direct", specShape.Of(hostcache.MLA, hostcache.PageFirstDirect, hostcache.BFloat16)),
		Entry("a Mamba-style component pool, one slot per page", mambaConfig(1)),
		Entry("a component pool of 4 slots per page", mambaConfig(pageSize)),
	)
})

var _ = Describe("a component pool (Mamba/SWA-style states)", func() {
	DescribeTable("lists one buffer per state, each in its state's region at slot x bytes per slot",
		func(ps int) {
			cfg := mambaConfig(ps)
			p, err := hostcache.New(cfg)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(p.Close)
			size := int64(cfg.Pages * ps)
			base, n := p.Region()
			Expect(n).To(BeEquivalentTo(size * (96 + 40)))
			Expect(p.PageBytes()).To(Equal(ps * (96 + 40)))
			Expect(p.BuffersPerPage()).To(Equal(2))
			idx := append(allSlots(cfg)[middlePage*ps:(middlePage+1)*ps], allSlots(cfg)[otherPage*ps:(otherPage+1)*ps]...)
			ptrs, sizes, err := p.GetPageBufferMeta(idx)
			Expect(err).NotTo(HaveOccurred())
			var want []uintptr
			for _, pg := range []int64{middlePage, otherPage} {
				first := pg * int64(ps)
				want = append(want, base+uintptr(first*96), base+uintptr(size*96+first*40))
			}
			Expect(ptrs).To(Equal(want))
			Expect(sizes).To(Equal([]int{96 * ps, 40 * ps, 96 * ps, 40 * ps}))
		},
		Entry("one slot per page, as SGLang's MambaPoolHost", 1),
		Entry("several slots per page", pageSize),
	)
})
