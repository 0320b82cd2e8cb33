package hostcache_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// ref is a plain reference model of a pool's layout, written from DOMAIN.md
// without looking at the package: the pointer formulas, and the buffer and
// flat-page dims tables.
type ref struct {
	kind                 hostcache.Kind
	layout               hostcache.Layout
	it                   int // bytes per element
	ps, pages            int
	L, H, D, R           int
	size                 int // slots = pages*ps
	bufDims, flatDims    []int
	pageAxis             int  // the axis of bufDims that selects the page
	pageAxisCountsTokens bool // that axis counts slots (size) rather than pages
}

func newRef(kind hostcache.Kind, layout hostcache.Layout, it, ps, pages, L, H, D, R int) ref {
	r := ref{kind: kind, layout: layout, it: it, ps: ps, pages: pages, L: L, H: H, D: D, R: R, size: pages * ps}
	size := r.size
	// The tables of DOMAIN.md, row for row.
	switch {
	case kind == hostcache.MHA && layout == hostcache.LayerFirst:
		r.bufDims, r.flatDims, r.pageAxis, r.pageAxisCountsTokens = []int{2, L, size, H, D}, []int{2, L, ps, H, D}, 2, true
	case kind == hostcache.MHA && layout == hostcache.PageFirst:
		r.bufDims, r.flatDims, r.pageAxis, r.pageAxisCountsTokens = []int{2, size, L, H, D}, []int{2, ps, L, H, D}, 1, true
	case kind == hostcache.MHA && layout == hostcache.PageFirstDirect:
		r.bufDims, r.flatDims, r.pageAxis = []int{2, pages, L, ps, H, D}, []int{2, 1, L, ps, H, D}, 1
	case kind == hostcache.MHA && layout == hostcache.PageHead:
		r.bufDims, r.flatDims, r.pageAxis = []int{2, pages, H, ps, L, D}, []int{2, 1, H, ps, L, D}, 1
	case kind == hostcache.MLA && layout == hostcache.LayerFirst:
		r.bufDims, r.flatDims, r.pageAxis, r.pageAxisCountsTokens = []int{L, size, 1, R}, []int{L, ps, 1, R}, 1, true
	case kind == hostcache.MLA && layout == hostcache.PageFirst:
		r.bufDims, r.flatDims, r.pageAxis, r.pageAxisCountsTokens = []int{size, L, 1, R}, []int{ps, L, 1, R}, 0, true
	case kind == hostcache.MLA && layout == hostcache.PageFirstDirect:
		r.bufDims, r.flatDims, r.pageAxis = []int{pages, L, ps, 1, R}, []int{1, L, ps, 1, R}, 0
	default:
		panic("no reference for " + kind.String() + " " + string(layout))
	}
	return r
}

func prod(dims []int) int {
	n := 1
	for _, d := range dims {
		n *= d
	}
	return n
}

// meta is DOMAIN.md's get_page_buffer_meta for the page at slot idx: offsets
// from the pool's base and sizes, in pointer order.
func (r ref) meta(idx int) (offs, sizes []int) {
	it := r.it
	if r.kind == hostcache.MLA {
		if r.layout == hostcache.LayerFirst {
			for l := 0; l < r.L; l++ {
				offs = append(offs, idx*r.R*it+l*r.size*r.R*it)
				sizes = append(sizes, r.ps*r.R*it)
			}
			return offs, sizes
		}
		return []int{idx * r.L * r.R * it}, []int{r.L * r.ps * r.R * it}
	}
	vOffset := r.L * r.size * r.H * r.D * it
	if r.layout == hostcache.LayerFirst {
		for l := 0; l < r.L; l++ {
			k := idx*r.H*r.D*it + l*r.size*r.H*r.D*it
			offs = append(offs, k, k+vOffset)
			sizes = append(sizes, r.ps*r.H*r.D*it, r.ps*r.H*r.D*it)
		}
		return offs, sizes
	}
	k := idx * r.L * r.H * r.D * it
	return []int{k, k + vOffset}, []int{r.L * r.ps * r.H * r.D * it, r.L * r.ps * r.H * r.D * it}
}

// flatToBuffer returns, for each element of the flat data page of the page
// at slot idx (in flat order), the linear index of that element in the pool
// buffer: unravel the flat index over flatDims, move the page axis to the
// page, ravel over bufDims.
func (r ref) flatToBuffer(idx int) []int {
	shift := idx / r.ps // page_first_direct, page_head: the pages axis
	if r.pageAxisCountsTokens {
		shift = idx // layer_first, page_first: the size axis
	}
	n := prod(r.flatDims)
	out := make([]int, n)
	coord := make([]int, len(r.flatDims))
	for e := range n {
		rem := e
		for a := len(r.flatDims) - 1; a >= 0; a-- {
			coord[a] = rem % r.flatDims[a]
			rem /= r.flatDims[a]
		}
		coord[r.pageAxis] += shift
		lin := 0
		for a, c := range coord {
			lin = lin*r.bufDims[a] + c
		}
		out[e] = lin
	}
	return out
}

// fill is the byte the fuzz test writes at offset o of pool memory.
func fill(o int) byte {
	x := uint64(o) + 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return byte(x ^ x>>31)
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// snapshot copies pool memory out through the buffers of every page, and
// fails unless those buffers cover it exactly once.
func snapshot(t *testing.T, p *hostcache.Pool, all []int64) []byte {
	t.Helper()
	base, n := p.Region()
	bufs, err := p.PageBuffers(all)
	if err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, n)
	covered := make([]int, n)
	for i, b := range bufs {
		off := int(addrOf(b) - base)
		if off < 0 || off+len(b) > n {
			t.Fatalf("buffer %d at offset %d, %d bytes, outside the pool's %d", i, off, len(b), n)
		}
		copy(mem[off:], b)
		for j := range b {
			covered[off+j]++
		}
	}
	for o, c := range covered {
		if c != 1 {
			t.Fatalf("byte %d of pool memory is in %d buffers, want exactly 1", o, c)
		}
	}
	return mem
}

func FuzzPageBufferMeta(f *testing.F) {
	// kind, layout, dtype, ps, pages, layers, heads, headDim, lora, rope, page, seed
	f.Add(uint8(0), uint8(0), uint8(0), uint8(3), uint8(5), uint8(2), uint8(1), uint8(7), uint8(0), uint8(0), uint8(2), uint64(1))
	f.Add(uint8(0), uint8(1), uint8(2), uint8(3), uint8(5), uint8(2), uint8(1), uint8(7), uint8(0), uint8(0), uint8(4), uint64(2))
	f.Add(uint8(0), uint8(2), uint8(3), uint8(7), uint8(3), uint8(1), uint8(2), uint8(3), uint8(0), uint8(0), uint8(1), uint64(3))
	f.Add(uint8(0), uint8(3), uint8(1), uint8(4), uint8(4), uint8(3), uint8(2), uint8(5), uint8(0), uint8(0), uint8(3), uint64(4))
	f.Add(uint8(1), uint8(0), uint8(0), uint8(3), uint8(5), uint8(2), uint8(0), uint8(0), uint8(7), uint8(3), uint8(2), uint64(5))
	f.Add(uint8(1), uint8(1), uint8(2), uint8(1), uint8(2), uint8(0), uint8(0), uint8(0), uint8(0), uint8(0), uint8(1), uint64(6))
	f.Add(uint8(1), uint8(2), uint8(4), uint8(5), uint8(4), uint8(3), uint8(0), uint8(0), uint8(11), uint8(4), uint8(3), uint64(7))
	f.Fuzz(func(t *testing.T, kindB, layoutB, dtypeB, psB, pagesB, layersB, headsB, dimB, loraB, ropeB, pageB uint8, seed uint64) {
		// Small bounds keep an iteration well under a millisecond: at most
		// 8*6*2*4*3*8*4 = 36 KiB of pool.
		kind := hostcache.Kind(kindB % 2)
		layouts := layoutsOf(kind)
		layout := layouts[int(layoutB)%len(layouts)]
		dt := allDTypes[int(dtypeB)%len(allDTypes)]
		it := map[hostcache.DType]int{hostcache.Float16: 2, hostcache.BFloat16: 2, hostcache.Float32: 4,
			hostcache.Float8E4M3: 1, hostcache.Float8E5M2: 1}[dt]
		ps, pages := 1+int(psB%8), 1+int(pagesB%6)
		L, H, D := 1+int(layersB%4), 1+int(headsB%3), 1+int(dimB%8)
		lora, rope := 1+int(loraB%12), int(ropeB%5)
		page := int(pageB) % pages
		idx := page * ps

		cfg := hostcache.Config{Kind: kind, Layout: layout, DType: dt, PageSize: ps, Pages: pages,
			LayerNum: L, HeadNum: H, HeadDim: D, KVLoraRank: lora, QKRopeHeadDim: rope}
		r := newRef(kind, layout, it, ps, pages, L, H, D, lora+rope)
		if kind == hostcache.MLA {
			r.H, r.D = 0, 0 // MLA has no heads; make sure the reference never uses them
		}
		p, err := hostcache.New(cfg)
		if err != nil {
			t.Fatalf("New(%+v): %v", cfg, err)
		}
		t.Cleanup(func() {
			if err := p.Close(); err != nil {
				t.Error(err)
			}
		})
		base, n := p.Region()
		if n != prod(r.bufDims)*it {
			t.Fatalf("Region() size %d, want %d", n, prod(r.bufDims)*it)
		}
		all, err := p.Alloc(r.size)
		if err != nil {
			t.Fatal(err)
		}
		pageIdx := func(pg int) []int64 {
			out := make([]int64, ps)
			for i := range out {
				out[i] = int64(pg*ps + i)
			}
			return out
		}

		// Pointer formulas, for this page and then for it followed by
		// another, which must simply concatenate.
		next := (page + 1) % pages
		ptrs, sizes, err := p.GetPageBufferMeta(append(pageIdx(page), pageIdx(next)...))
		if err != nil {
			t.Fatal(err)
		}
		wantOffs, wantSizes := r.meta(idx)
		o2, s2 := r.meta(next * ps)
		wantOffs, wantSizes = append(wantOffs, o2...), append(wantSizes, s2...)
		offs := make([]int, len(ptrs))
		for i, ptr := range ptrs {
			offs[i] = int(ptr - base)
		}
		if !slices.Equal(offs, wantOffs) || !slices.Equal(sizes, wantSizes) {
			t.Fatalf("%s %s: GetPageBufferMeta offsets %v sizes %v, want %v %v", kind, layout, offs, sizes, wantOffs, wantSizes)
		}
		bufs, err := p.PageBuffers(pageIdx(page))
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range bufs {
			if addrOf(b) != ptrs[i] || len(b) != sizes[i] {
				t.Fatalf("PageBuffers[%d] at %#x len %d, GetPageBufferMeta says %#x len %d", i, addrOf(b), len(b), ptrs[i], sizes[i])
			}
		}

		// Fill all of pool memory, through the buffers of every page, with
		// a byte that depends on its offset.
		allBufs, err := p.PageBuffers(all)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range allBufs {
			off := int(addrOf(b) - base)
			for j := range b {
				b[j] = fill(off + j)
			}
		}
		mem := snapshot(t, p, all)

		// GetDataPage, element by element from the dims tables.
		lin := r.flatToBuffer(idx)
		want := make([]byte, 0, len(lin)*it)
		for _, e := range lin {
			want = append(want, mem[e*it:(e+1)*it]...)
		}
		got, err := p.GetDataPage(int64(idx))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s %s: GetDataPage(%d) differs from the element-wise reference", kind, layout, idx)
		}
		flat, err := p.FlatPageBuffers(pageIdx(page))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bytes.Join(flat, nil), want) {
			t.Fatalf("%s %s: FlatPageBuffers concatenated differ from the flat page", kind, layout)
		}

		// SetFromFlatDataPage puts each element where the tables say, and
		// writes nothing else.
		rng := rand.New(rand.NewPCG(seed, 0))
		in := make([]byte, len(want))
		for i := range in {
			in[i] = byte(rng.Uint32())
		}
		if err := p.SetFromFlatDataPage(int64(idx), in); err != nil {
			t.Fatal(err)
		}
		after := snapshot(t, p, all)
		wantMem := bytes.Clone(mem)
		for e, l := range lin {
			copy(wantMem[l*it:(l+1)*it], in[e*it:(e+1)*it])
		}
		if !bytes.Equal(after, wantMem) {
			t.Fatalf("%s %s: SetFromFlatDataPage(%d) wrote pool memory other than the reference says", kind, layout, idx)
		}
	})
}
