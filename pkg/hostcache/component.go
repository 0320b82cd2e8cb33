package hostcache

import (
	"fmt"
	"math"
)

// badConfig returns an error wrapping ErrInvalidConfig.
func badConfig(format string, args ...any) (geometry, error) {
	return geometry{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}

// MaxComponentBuffers is the most buffers a page of a Component pool may
// have: the length of Config.BufferBytes.
const MaxComponentBuffers = 16

// componentGeometry is geometry for a Component pool: one region per
// buffer, one after another (see Config.BufferBytes).
func (c Config) componentGeometry() (geometry, error) {
	bad := badConfig
	switch {
	case c.PageSize <= 0:
		return bad("PageSize is %d, must be positive", c.PageSize)
	case c.Pages <= 0:
		return bad("Pages is %d, must be positive", c.Pages)
	case c.BufferBytes[0] <= 0:
		return bad("BufferBytes[0] is %d: a component pool needs at least one buffer", c.BufferBytes[0])
	}
	n := 0
	for n < MaxComponentBuffers && c.BufferBytes[n] != 0 {
		n++
	}
	for i := n; i < MaxComponentBuffers; i++ {
		if c.BufferBytes[i] != 0 {
			return bad("BufferBytes[%d] is %d after the 0 that ends the list", i, c.BufferBytes[i])
		}
	}
	var m checkedMul
	g := geometry{kind: Component, layout: c.Layout, ps: int64(c.PageSize), layers: 1, halves: 1}
	g.slots = m.mul(int64(c.Pages), int64(c.PageSize))
	g.comp = make([]int64, n)
	g.compOff = make([]int64, n)
	for i, b := range c.BufferBytes[:n] {
		if b < 0 {
			return bad("BufferBytes[%d] is %d, must be positive", i, b)
		}
		if g.row > math.MaxInt64-int64(b) {
			return bad("BufferBytes overflow")
		}
		g.comp[i] = int64(b)
		g.compOff[i] = m.mul(g.slots, g.row) // the regions of the buffers before
		g.row += int64(b)
	}
	g.total = m.mul(g.slots, g.row)
	g.pageSize = m.mul(g.ps, g.row)
	if m.overflow || g.total > math.MaxInt {
		return bad("pool of %d pages x %d tokens overflows the address space", c.Pages, c.PageSize)
	}
	return g, nil
}

// appendComponentSegments appends the buffers of the Component page whose
// first slot is idx: the same in pointer and flat order.
func (g *geometry) appendComponentSegments(dst []segment, idx int64) []segment {
	for i, b := range g.comp {
		dst = append(dst, segment{g.compOff[i] + idx*b, g.ps * b})
	}
	return dst
}

// together reports whether a page's bytes lie in at most two runs, K and
// (for MHA) V half a buffer on: every layout but layer_first, for MHA and
// MLA. A Component page has a run per buffer.
func (g *geometry) together() bool { return g.layout != LayerFirst && g.kind != Component }
