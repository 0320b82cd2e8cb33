package hostcache

import (
	"fmt"
	"slices"
	"unsafe"
)

// baseOf returns the address of mem's first byte.
func baseOf(mem []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(mem))) }

// segments checks indices and returns the buffers of every page, in order.
// The caller holds p.mu.
func (p *Pool) segments(indices []int64, o order) ([]segment, error) {
	if p.mem == nil {
		return nil, ErrClosed
	}
	starts, err := p.pageStarts(indices)
	if err != nil {
		return nil, err
	}
	segs := make([]segment, 0, len(starts)*p.g.buffersPerPage())
	for _, s := range starts {
		segs = p.g.appendSegments(segs, s, o)
	}
	return segs, nil
}

// GetPageBufferMeta returns, for each page in indices (PageSize slots per
// page), the address and byte size of each of its buffers in pool memory:
// [k, v] per page for MHA, [k_l0, v_l0, k_l1, v_l1, ...] for MHA
// layer_first, one buffer per page for MLA and LayerNum for MLA layer_first.
// The addresses stay valid until Close.
func (p *Pool) GetPageBufferMeta(indices []int64) (ptrs []uintptr, sizes []int, err error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	segs, err := p.segments(indices, pointerOrder)
	if err != nil {
		return nil, nil, err
	}
	base := baseOf(p.mem)
	ptrs = make([]uintptr, len(segs))
	sizes = make([]int, len(segs))
	for i, s := range segs {
		ptrs[i] = base + uintptr(s.off)
		sizes[i] = int(s.len)
	}
	return ptrs, sizes, nil
}

// PageBuffers returns the buffers GetPageBufferMeta describes, as slices into
// pool memory in the same order. The slices alias the pool and stay valid
// until Close.
func (p *Pool) PageBuffers(indices []int64) ([][]byte, error) {
	return p.buffers(indices, pointerOrder)
}

// FlatPageBuffers returns the same buffers as PageBuffers, listed in the
// order their bytes appear in a flat data page (all of K, then all of V).
// Reading a flat page file into them in turn is SetFromFlatDataPage without
// the copy. The order differs from PageBuffers only for MHA layer_first.
func (p *Pool) FlatPageBuffers(indices []int64) ([][]byte, error) {
	return p.buffers(indices, flatOrder)
}

// AppendPageBuffers appends to dst the buffers PageBuffers returns and
// returns the extended slice, but checks of each page's PageSize slots only
// the first (in range, on a page boundary) and the last (PageSize-1 after
// the first), and takes the slots between to follow: SGLang's
// get_page_buffer_meta reads only the first. It is for callers that move
// whole batches of pages, for whom reading every slot number, or a new
// slice per call, costs more than the copy of a small page. On error dst
// holds unspecified buffers.
func (p *Pool) AppendPageBuffers(dst [][]byte, indices []int64) ([][]byte, error) {
	return p.buffersChecked(dst, indices, pointerOrder, true)
}

func (p *Pool) buffers(indices []int64, o order) ([][]byte, error) {
	return p.buffersChecked(nil, indices, o, false)
}

// buffersChecked appends to dst the buffers of the pages in indices in
// order o; ends checks only each page's first and last slot.
func (p *Pool) buffersChecked(dst [][]byte, indices []int64, o order, ends bool) ([][]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.mem == nil {
		return nil, ErrClosed
	}
	ps := int(p.g.ps)
	if len(indices)%ps != 0 {
		return nil, fmt.Errorf("%w: %d indices for page size %d", ErrBadIndices, len(indices), ps)
	}
	// Straight to slices, page by page: no list of starts or segments in
	// between, since V1 storage calls this on every batch.
	out := slices.Grow(dst, len(indices)/ps*p.g.buffersPerPage())
	if ends && p.g.together() {
		return p.appendEnds(out, indices)
	}
	var small [2]segment
	one := small[:0]
	for i := 0; i < len(indices); i += ps {
		page := indices[i : i+ps]
		var first int64
		var err error
		if ends {
			first = page[0]
			err = p.checkStart(first)
			if err == nil && page[ps-1] != first+int64(ps-1) {
				err = fmt.Errorf("%w: slot %d at position %d does not follow %d", ErrBadIndices, page[ps-1], i+ps-1, first+int64(ps-2))
			}
		} else {
			first, err = p.checkPage(page, i)
		}
		if err != nil {
			return nil, err
		}
		if p.g.together() {
			// A page's layers lie together: K, and V half a buffer on
			// (appendSegments, without the list).
			k, n := first*p.g.layers*p.g.row, p.g.layers*p.g.ps*p.g.row
			out = append(out, p.mem[k:k+n:k+n])
			if p.g.halves == 2 {
				v := k + p.g.vOffset
				out = append(out, p.mem[v:v+n:v+n])
			}
			continue
		}
		one = p.g.appendSegments(one[:0], first, o)
		for _, s := range one {
			out = append(out, p.mem[s.off:s.off+s.len:s.off+s.len])
		}
	}
	return out, nil
}

// appendEnds is buffersChecked with ends for a layout whose pages lie
// together, in two tight loops. The first checks every page's first and
// last slot with no branch per page: its loads are independent, so that
// with indices out of cache the CPU has many misses in flight at once
// instead of one at a time. The second, over indices now in cache, builds
// the slices. The error is built only for a batch that fails. The caller
// holds p.mu shared.
func (p *Pool) appendEnds(out [][]byte, indices []int64) ([][]byte, error) {
	g := &p.g
	ps := g.ps
	if ps&(ps-1) != 0 {
		if err := p.checkEnds(indices); err != nil {
			return nil, err
		}
	} else {
		// bad gathers a first slot off a page boundary and a last slot
		// that does not follow it; top the largest first slot, which
		// also catches a negative one.
		var bad, top uint64
		for i := int64(0); i+ps <= int64(len(indices)); i += ps {
			first, last := indices[i], indices[i+ps-1]
			bad |= uint64(first)&uint64(ps-1) | uint64(last-first-(ps-1))
			top = max(top, uint64(first))
		}
		if bad != 0 || top >= uint64(g.slots) {
			return nil, p.checkEnds(indices)
		}
	}
	stride, n := g.layers*g.row, g.layers*ps*g.row
	mem := p.mem
	if g.halves == 2 {
		vOff := g.vOffset
		for i := int64(0); i+ps <= int64(len(indices)); i += ps {
			k := indices[i] * stride
			v := k + vOff
			out = append(out, mem[k:k+n:k+n], mem[v:v+n:v+n])
		}
		return out, nil
	}
	for i := int64(0); i+ps <= int64(len(indices)); i += ps {
		k := indices[i] * stride
		out = append(out, mem[k:k+n:k+n])
	}
	return out, nil
}

// checkEnds checks the first and last slot of each page of indices, as
// appendEnds does, and returns the error of the first page that fails.
func (p *Pool) checkEnds(indices []int64) error {
	ps := p.g.ps
	for i := int64(0); i+ps <= int64(len(indices)); i += ps {
		first, last := indices[i], indices[i+ps-1]
		if err := p.checkStart(first); err != nil {
			return err
		}
		if last != first+ps-1 {
			return fmt.Errorf("%w: slot %d at position %d does not follow %d", ErrBadIndices, last, i+ps-1, first+ps-2)
		}
	}
	return nil
}

// GetDataPage returns a new copy of the page whose first slot is index, in
// SGLang's flat order for the pool's layout.
func (p *Pool) GetDataPage(index int64) ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	segs, err := p.pageSegments(index)
	if err != nil {
		return nil, err
	}
	page := make([]byte, 0, p.g.pageSize)
	for _, s := range segs {
		page = append(page, p.mem[s.off:s.off+s.len]...)
	}
	return page, nil
}

// GetDummyFlatDataPage returns a new zeroed buffer of PageBytes bytes.
func (p *Pool) GetDummyFlatDataPage() []byte { return make([]byte, p.g.pageSize) }

// SetFromFlatDataPage copies a flat data page, as GetDataPage returns it,
// into the page whose first slot is index. page must be PageBytes long.
func (p *Pool) SetFromFlatDataPage(index int64, page []byte) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.mem == nil {
		return ErrClosed // before the length check: every call after Close is ErrClosed
	}
	if int64(len(page)) != p.g.pageSize {
		return fmt.Errorf("%w: %d bytes, page is %d", ErrPageLength, len(page), p.g.pageSize)
	}
	segs, err := p.pageSegments(index)
	if err != nil {
		return err
	}
	for _, s := range segs {
		page = page[copy(p.mem[s.off:s.off+s.len], page):]
	}
	return nil
}

// pageSegments returns one page's buffers in flat order. The caller holds p.mu.
func (p *Pool) pageSegments(index int64) ([]segment, error) {
	if p.mem == nil {
		return nil, ErrClosed
	}
	if err := p.checkStart(index); err != nil {
		return nil, err
	}
	return p.g.appendSegments(make([]segment, 0, p.g.buffersPerPage()), index, flatOrder), nil
}
