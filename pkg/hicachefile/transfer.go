package hicachefile

import "fmt"

// The types of the v2 interface (see v2.go), on every platform.

// KVPool is the name of the KV pool in the v2 interface: RegisterPool and
// Transfer.Pool take it (or SGLang's "__default__") for the pool of
// RegisterMemPoolHost, whose pages keep the plain key.
const KVPool = "kv"

// HitPolicy says which pages of a component pool a prefix needs
// (SGLang's PoolHitPolicy). The zero value is AllPages, SGLang's default.
type HitPolicy int

const (
	// AllPages (SGLang's "all_pages") needs the pool's page for every page
	// of the KV prefix, as DeepSeek's DSA indexer does.
	AllPages HitPolicy = iota
	// TrailingPages (SGLang's "trailing_pages") needs the pool's page only
	// for the last len(Transfer.Keys) pages of the prefix (at least one),
	// as Mamba and SWA states do.
	TrailingPages
)

// String returns SGLang's name of the policy: "all_pages" or
// "trailing_pages".
func (h HitPolicy) String() string {
	switch h {
	case AllPages:
		return "all_pages"
	case TrailingPages:
		return "trailing_pages"
	}
	return fmt.Sprintf("HitPolicy(%d)", int(h))
}

// Transfer is one pool's part of a v2 call (SGLang's PoolTransfer): the
// pool's name, the page keys, the host slots of those pages in that
// pool (PageSize of the pool's slots per key, the first naming the page),
// and, for BatchExistsV2, the pool's hit policy. Any policy other than
// AllPages is TrailingPages, as in SGLang.
type Transfer struct {
	// Pool names the pool: KVPool, or a name given to RegisterPool.
	Pool string
	// Keys are the page keys of this transfer. BatchExistsV2 uses only
	// their number, for TrailingPages.
	Keys []string
	// HostIndices are the pool's slots of the pages, PageSize per key.
	HostIndices []int64
	// HitPolicy is the pool's hit policy in BatchExistsV2.
	HitPolicy HitPolicy
}

// TransferResult is BatchExistsV2's answer (SGLang's PoolTransferResult).
type TransferResult struct {
	// KVHitPages is the usable prefix: the pages whose KV page and every
	// transfer's required pages are all stored.
	KVHitPages int
	// PoolHitPages maps KVPool to the stored KV prefix and each transfer's
	// pool to the prefix its policy allows, leaving out those of 0 and the
	// pools after the usable prefix fell to 0. It is never nil.
	PoolHitPages map[string]int
}
