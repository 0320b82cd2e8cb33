package hostcache

import (
	"fmt"
	"math/rand/v2"
	"unsafe"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/pools"
)

// The shape every spec uses: small, but with extents that differ from one
// another, so that a formula with two factors swapped gives another number.
const (
	pageSize = 4 // ps, tokens per page
	pages    = 6
	slots    = pages * pageSize // size
	layers   = 3                // L
	heads    = 2                // H
	headDim  = 8                // D
	loraRank = 8
	ropeDim  = 4
	rowMLA   = loraRank + ropeDim // R
)

// The pages the meta specs ask about, in this order: neither is page 0 and
// they are listed backwards, so a formula that ignores idx, or a result in
// the wrong page order, cannot pass.
const (
	middlePage = 3
	otherPage  = 1
)

var (
	mhaLayouts = []hostcache.Layout{hostcache.LayerFirst, hostcache.PageFirst, hostcache.PageFirstDirect, hostcache.PageHead}
	mlaLayouts = []hostcache.Layout{hostcache.LayerFirst, hostcache.PageFirst, hostcache.PageFirstDirect}
	// dtypes spans the three element sizes: 2, 1 and 4 bytes.
	dtypes = []hostcache.DType{hostcache.Float16, hostcache.Float8E4M3, hostcache.Float32}
)

// itemSize is the bytes per element, written out here rather than taken from
// DType.Size so that the specs check it.
func itemSize(dt hostcache.DType) int {
	switch dt {
	case hostcache.Float16, hostcache.BFloat16:
		return 2
	case hostcache.Float32:
		return 4
	case hostcache.Float8E4M3, hostcache.Float8E5M2:
		return 1
	}
	panic(fmt.Sprintf("itemSize: no size for %q", dt))
}

// specShape is the pool shape every spec uses (the constants above);
// specShape.Of gives a pool of a kind, layout and dtype.
var specShape = pools.Shape{PageSize: pageSize, Pages: pages, Layers: layers, Heads: heads, HeadDim: headDim,
	LoraRank: loraRank, RopeDim: ropeDim}

// layoutEntries is one table entry per layout and dtype: (layout, dtype).
func layoutEntries(layouts []hostcache.Layout) []TableEntry {
	var out []TableEntry
	for _, l := range layouts {
		for _, dt := range dtypes {
			out = append(out, Entry(fmt.Sprintf("%s, %s", l, dt), l, dt))
		}
	}
	return out
}

// kindLayoutEntries is one table entry per kind, layout and dtype:
// (kind, layout, dtype).
func kindLayoutEntries() []TableEntry {
	var out []TableEntry
	for _, k := range []hostcache.Kind{hostcache.MHA, hostcache.MLA} {
		layouts := mhaLayouts
		if k == hostcache.MLA {
			layouts = mlaLayouts
		}
		for _, l := range layouts {
			for _, dt := range dtypes {
				out = append(out, Entry(fmt.Sprintf("%s, %s, %s", k, l, dt), k, l, dt))
			}
		}
	}
	return out
}

// newFullPool builds a pool for cfg, closes it after the spec, and allocates
// every page, as a cache controller holding the whole pool would.
func newFullPool(cfg hostcache.Config) *hostcache.Pool {
	GinkgoHelper()
	p, err := hostcache.New(cfg)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(p.Close)
	_, err = p.Alloc(slots)
	Expect(err).NotTo(HaveOccurred())
	Expect(p.Available()).To(BeZero())
	return p
}

// pageSlots returns the host indices of page pg: pageSize consecutive slots.
func pageSlots(pg int) []int64 {
	out := make([]int64, pageSize)
	for i := range out {
		out[i] = int64(pg*pageSize + i)
	}
	return out
}

// metaPages is the indices the meta specs pass: middlePage, then otherPage.
func metaPages() []int64 { return append(pageSlots(middlePage), pageSlots(otherPage)...) }

// wantMeta is DOMAIN.md's get_page_buffer_meta for the page starting at slot
// idx: each buffer's offset from the pool's base, and its size, in pointer
// order.
func wantMeta(kind hostcache.Kind, layout hostcache.Layout, it, idx int) (offs, sizes []int) {
	if kind == hostcache.MLA {
		if layout == hostcache.LayerFirst {
			for l := range layers {
				offs = append(offs, idx*rowMLA*it+l*slots*rowMLA*it)
				sizes = append(sizes, pageSize*rowMLA*it)
			}
			return offs, sizes
		}
		return []int{idx * layers * rowMLA * it}, []int{layers * pageSize * rowMLA * it}
	}
	vOffset := layers * slots * heads * headDim * it
	if layout == hostcache.LayerFirst {
		for l := range layers {
			k := idx*heads*headDim*it + l*slots*heads*headDim*it
			offs = append(offs, k, k+vOffset)
			sizes = append(sizes, pageSize*heads*headDim*it, pageSize*heads*headDim*it)
		}
		return offs, sizes
	}
	k := idx * layers * heads * headDim * it
	n := layers * pageSize * heads * headDim * it
	return []int{k, k + vOffset}, []int{n, n}
}

// flatOffset is where the j-th buffer of a page (pointer order) starts in
// the flat data page. MHA's flat page is (2, ...): K in the first half, V in
// the second; layer_first's halves are (L, ps, H, D), one layer after another.
func flatOffset(kind hostcache.Kind, layout hostcache.Layout, it, j int) int {
	if kind == hostcache.MLA {
		if layout == hostcache.LayerFirst {
			return j * pageSize * rowMLA * it // flat (L, ps, 1, R)
		}
		return 0
	}
	half := layers * pageSize * heads * headDim * it
	if layout == hostcache.LayerFirst {
		l, v := j/2, j%2
		return v*half + l*pageSize*heads*headDim*it
	}
	return j * half
}

// pageBytes is DOMAIN.md's page size in bytes.
func pageBytes(kind hostcache.Kind, it int) int {
	if kind == hostcache.MLA {
		return pageSize * layers * rowMLA * it
	}
	return pageSize * 2 * layers * heads * headDim * it
}

// addr is the address of b's first byte.
func addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// randomBytes returns n bytes from a generator seeded by Ginkgo's seed and
// salt, so that a failure can be replayed with --seed.
func randomBytes(n int, salt uint64) []byte {
	r := rand.New(rand.NewPCG(uint64(GinkgoRandomSeed()), salt))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
