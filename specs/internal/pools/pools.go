// Package pools is the one home of the host pool configs the spec packages
// use: each spec package names its pool shape once, as a Shape, and takes
// the configs it needs from it.
package pools

import "github.com/hicache-go/hicache/pkg/hostcache"

// Shape is a host pool's kind, layout, dtype and geometry. An MHA pool
// takes Heads and HeadDim, an MLA pool LoraRank and RopeDim; a Shape may
// set all four, so that one Shape serves pools of both kinds.
type Shape struct {
	// Kind, Layout and DType are the pool's; Of replaces them.
	Kind hostcache.Kind
	// Layout is the pool's buffer layout.
	Layout hostcache.Layout
	// DType is the pool's element type.
	DType hostcache.DType
	// PageSize is the tokens per page (ps).
	PageSize int
	// Pages is how many pages the pool holds.
	Pages int
	// Layers is the layer count (L).
	Layers int
	// Heads and HeadDim are an MHA pool's KV heads (H) and head size (D).
	Heads, HeadDim int
	// LoraRank and RopeDim are an MLA pool's kv_lora_rank and
	// qk_rope_head_dim, whose sum is its row (R).
	LoraRank, RopeDim int
}

// Config returns the pool config of s, with only the fields of s's kind
// set.
func (s Shape) Config() hostcache.Config {
	c := hostcache.Config{Kind: s.Kind, Layout: s.Layout, DType: s.DType,
		PageSize: s.PageSize, Pages: s.Pages, LayerNum: s.Layers}
	if s.Kind == hostcache.MLA {
		c.KVLoraRank, c.QKRopeHeadDim = s.LoraRank, s.RopeDim
	} else {
		c.HeadNum, c.HeadDim = s.Heads, s.HeadDim
	}
	return c
}

// Of returns the pool config of s with kind, layout and dtype.
func (s Shape) Of(kind hostcache.Kind, layout hostcache.Layout, dtype hostcache.DType) hostcache.Config {
	s.Kind, s.Layout, s.DType = kind, layout, dtype
	return s.Config()
}
