package hostcache

// segment is one contiguous byte range of the pool buffer.
type segment struct{ off, len int64 }

// order selects how a page's buffers are listed.
type order int

const (
	// pointerOrder is GetPageBufferMeta's order: [k, v] per page, or
	// [k_l0, v_l0, k_l1, v_l1, ...] for MHA layer_first.
	pointerOrder order = iota
	// flatOrder is the order of the bytes in a flat data page: all of K
	// before all of V, layer by layer within each.
	flatOrder
)

// buffersPerPage is the number of segments that describe one page.
func (g *geometry) buffersPerPage() int {
	if g.kind == Component {
		return len(g.comp)
	}
	n := 1
	if g.layout == LayerFirst {
		n = int(g.layers)
	}
	return n * int(g.halves)
}

// appendSegments appends the buffers of the page whose first slot is idx, in
// the given order, and returns the extended slice. idx must be a valid page
// start; the offsets follow DOMAIN.md's pointer formulas.
func (g *geometry) appendSegments(dst []segment, idx int64, o order) []segment {
	if g.kind == Component {
		return g.appendComponentSegments(dst, idx)
	}
	if g.layout != LayerFirst {
		// page_first, page_first_direct and page_head all keep a page's
		// layers together: idx*L*row is the start of page idx/ps in the
		// (pages, L, ps, ...) and (pages, H, ps, L, D) shapes too.
		k := segment{idx * g.layers * g.row, g.layers * g.ps * g.row}
		dst = append(dst, k)
		if g.halves == 2 {
			dst = append(dst, segment{k.off + g.vOffset, k.len})
		}
		return dst
	}
	layerStride := g.slots * g.row
	n := g.ps * g.row
	if g.halves == 1 || o == flatOrder {
		for h := int64(0); h < g.halves; h++ {
			for l := int64(0); l < g.layers; l++ {
				dst = append(dst, segment{h*g.vOffset + l*layerStride + idx*g.row, n})
			}
		}
		return dst
	}
	for l := int64(0); l < g.layers; l++ {
		k := l*layerStride + idx*g.row
		dst = append(dst, segment{k, n}, segment{k + g.vOffset, n})
	}
	return dst
}
