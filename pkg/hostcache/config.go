package hostcache

import (
	"fmt"
	"math"
)

// Kind is the attention family of the model whose KV cache the pool holds.
type Kind int

const (
	// MHA is multi-head (and grouped-query) attention: a K and a V tensor per
	// layer, HeadNum heads of HeadDim elements each.
	MHA Kind = iota
	// MLA is multi-head latent attention (DeepSeek): one latent row of
	// KVLoraRank+QKRopeHeadDim elements per layer, identical on every TP rank.
	MLA
	// Component is a component pool of a hybrid model that is neither MHA
	// nor MLA KV: Mamba's conv and temporal states, say, whose host pool
	// (SGLang's MambaPoolHost) keeps each state in a buffer of its own. A
	// page holds one buffer per entry of Config.BufferBytes; see
	// Config.BufferBytes for where they lie.
	Component
)

// String returns "MHA", "MLA" or "Component".
func (k Kind) String() string {
	switch k {
	case MHA:
		return "MHA"
	case MLA:
		return "MLA"
	case Component:
		return "Component"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Layout is the memory layout of the pool buffer, named as in SGLang.
type Layout string

const (
	// LayerFirst lays the buffer out as (2, L, size, H, D) for MHA and
	// (L, size, 1, R) for MLA.
	LayerFirst Layout = "layer_first"
	// PageFirst lays the buffer out as (2, size, L, H, D) for MHA and
	// (size, L, 1, R) for MLA.
	PageFirst Layout = "page_first"
	// PageFirstDirect lays the buffer out as (2, pages, L, ps, H, D) for MHA
	// and (pages, L, ps, 1, R) for MLA.
	PageFirstDirect Layout = "page_first_direct"
	// PageHead lays the buffer out as (2, pages, H, ps, L, D). MHA only.
	PageHead Layout = "page_head"
)

// Layouts lists every layout, in a fixed order.
var Layouts = []Layout{LayerFirst, PageFirst, PageFirstDirect, PageHead}

// DType is the element type of the KV cache, named as in PyTorch.
type DType string

const (
	// Float16 is IEEE half precision, 2 bytes.
	Float16 DType = "float16"
	// BFloat16 is bfloat16, 2 bytes.
	BFloat16 DType = "bfloat16"
	// Float32 is IEEE single precision, 4 bytes.
	Float32 DType = "float32"
	// Float8E4M3 is float8_e4m3fn, 1 byte.
	Float8E4M3 DType = "float8_e4m3fn"
	// Float8E5M2 is float8_e5m2, 1 byte.
	Float8E5M2 DType = "float8_e5m2"
	// Uint8 is a raw byte: SGLang keeps an FP8 KV cache in uint8 host
	// pools.
	Uint8 DType = "uint8"
)

// Size returns the bytes per element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case Float16, BFloat16:
		return 2
	case Float32:
		return 4
	case Float8E4M3, Float8E5M2, Uint8:
		return 1
	}
	return 0
}

// Config describes a host KV pool. Every size must be positive; the fields
// of the other kind (HeadNum and HeadDim for MLA, KVLoraRank and
// QKRopeHeadDim for MHA) are ignored.
type Config struct {
	// Kind is the model's attention family: MHA (K and V per layer) or
	// MLA (one latent row per layer).
	Kind Kind
	// Layout is the order of the buffer's dimensions, as SGLang names it
	// (LayerFirst, PageFirst, PageFirstDirect, PageHead); it decides
	// where each page's bytes lie and how many buffers GetPageBufferMeta
	// returns per page.
	Layout Layout
	// DType is the element type of the KV cache; its Size is the bytes
	// per element.
	DType DType
	// PageSize is the number of tokens per page (SGLang's page_size).
	PageSize int
	// Pages is the capacity in pages: the pool holds Pages*PageSize token
	// slots.
	Pages int
	// LayerNum is the number of attention layers whose KV the pool holds.
	LayerNum int

	// HeadNum and HeadDim are, for MHA, the KV heads per layer (on this
	// TP rank) and the elements per head.
	HeadNum, HeadDim int
	// KVLoraRank and QKRopeHeadDim are, for MLA, the widths of the latent
	// KV and of the rotary part of one row: a row holds their sum.
	KVLoraRank, QKRopeHeadDim int

	// BufferBytes is, for Component, the bytes each of a page's buffers
	// takes per token slot, in the order GetPageBufferMeta lists them (for
	// Mamba: the temporal state of every layer, then each conv state); the
	// first 0 ends the list, so a page has at most MaxComponentBuffers
	// buffers (an array, so that a Config stays comparable). The
	// pool lays out one region per buffer, one after another, each of
	// PageSize*Pages*BufferBytes[b] bytes with the slots in order (SGLang's
	// page_first (size, L, 1, *shape) per state), so buffer b of the page
	// whose first slot is idx starts idx*BufferBytes[b] bytes into region
	// b and is PageSize*BufferBytes[b] long. A flat data page is the
	// buffers in order. Layout must be PageFirst or PageFirstDirect (the
	// same bytes here); LayerNum, HeadNum, HeadDim, KVLoraRank and
	// QKRopeHeadDim are ignored. DType is the states' element type, which
	// the region's base is aligned to.
	BufferBytes [MaxComponentBuffers]int

	// Lock mlocks the buffer: the host analogue of pinned memory. New fails
	// with a clear error when RLIMIT_MEMLOCK refuses.
	Lock bool
}

// geometry is everything derived from a valid Config, in bytes.
type geometry struct {
	kind     Kind
	layout   Layout
	ps       int64 // tokens per page
	slots    int64 // token slots in the pool
	layers   int64
	row      int64 // bytes of one token in one layer (one of K or V for MHA)
	halves   int64 // 2 for MHA (K and V), 1 for MLA and Component
	vOffset  int64 // bytes from K to V; 0 for MLA
	total    int64 // bytes of the whole buffer
	pageSize int64 // bytes of one whole page
	// comp and compOff are, for Component, each buffer's bytes per slot
	// and the offset of its region; row is then their sum, layers 1.
	comp, compOff []int64
}

// Validate reports whether c describes a pool that can be built. The error
// wraps ErrInvalidConfig and says which field is wrong.
func (c Config) Validate() error {
	_, err := c.geometry()
	return err
}

func (c Config) geometry() (geometry, error) {
	bad := func(format string, args ...any) (geometry, error) {
		return geometry{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	if c.Kind != MHA && c.Kind != MLA && c.Kind != Component {
		return bad("unknown kind %d", int(c.Kind))
	}
	switch c.Layout {
	case LayerFirst, PageFirst, PageFirstDirect:
		if c.Kind == Component && c.Layout == LayerFirst {
			return bad("layout %q is not supported for a component pool", c.Layout)
		}
	case PageHead:
		if c.Kind != MHA {
			return bad("layout %q is not supported for %s", c.Layout, c.Kind)
		}
	default:
		return bad("unknown layout %q", c.Layout)
	}
	it := c.DType.Size()
	if it == 0 {
		return bad("unknown dtype %q", c.DType)
	}
	type field struct {
		name string
		v    int
	}
	if c.Kind == Component {
		return c.componentGeometry()
	}
	positive := []field{{"PageSize", c.PageSize}, {"Pages", c.Pages}, {"LayerNum", c.LayerNum}}
	if c.Kind == MHA {
		positive = append(positive, field{"HeadNum", c.HeadNum}, field{"HeadDim", c.HeadDim})
	} else {
		positive = append(positive, field{"KVLoraRank", c.KVLoraRank})
		if c.QKRopeHeadDim < 0 {
			return bad("QKRopeHeadDim is %d, must not be negative", c.QKRopeHeadDim)
		}
	}
	for _, f := range positive {
		if f.v <= 0 {
			return bad("%s is %d, must be positive", f.name, f.v)
		}
	}

	var m checkedMul
	g := geometry{kind: c.Kind, layout: c.Layout, ps: int64(c.PageSize), layers: int64(c.LayerNum)}
	g.slots = m.mul(int64(c.Pages), int64(c.PageSize))
	if c.Kind == MHA {
		g.halves = 2
		g.row = m.mul(m.mul(int64(c.HeadNum), int64(c.HeadDim)), int64(it))
	} else {
		g.halves = 1
		if int64(c.KVLoraRank) > math.MaxInt64-int64(c.QKRopeHeadDim) {
			return bad("KVLoraRank %d + QKRopeHeadDim %d overflows", c.KVLoraRank, c.QKRopeHeadDim)
		}
		r := int64(c.KVLoraRank) + int64(c.QKRopeHeadDim)
		g.row = m.mul(r, int64(it))
	}
	half := m.mul(m.mul(g.layers, g.slots), g.row)
	g.total = m.mul(half, g.halves)
	g.pageSize = m.mul(m.mul(m.mul(g.ps, g.layers), g.row), g.halves)
	if c.Kind == MHA {
		g.vOffset = half
	}
	if m.overflow || g.total > math.MaxInt {
		return bad("pool of %d pages x %d tokens overflows the address space", c.Pages, c.PageSize)
	}
	return g, nil
}

// checkedMul multiplies non-negative int64s and remembers any overflow.
type checkedMul struct{ overflow bool }

func (m *checkedMul) mul(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		m.overflow = true
		return 0
	}
	return a * b
}
