// Package hostcache is the host-memory KV pool of a hierarchical KV cache:
// the Go counterpart of SGLang's MHATokenToKVPoolHost and
// MLATokenToKVPoolHost.
//
// A Pool holds Pages*PageSize token slots of one model's KV cache in a single
// anonymous mmap, laid out in one of SGLang's four layouts. Pages are
// allocated with Alloc and named by host indices: PageSize consecutive slot
// numbers per page, the first of which is a multiple of PageSize.
//
// # Layouts
//
// With L layers, H KV heads, D head dim, ps tokens per page, size slots and
// R = KVLoraRank+QKRopeHeadDim, the buffer is shaped
//
//	layout             MHA                       MLA
//	layer_first        (2, L, size, H, D)        (L, size, 1, R)
//	page_first         (2, size, L, H, D)        (size, L, 1, R)
//	page_first_direct  (2, pages, L, ps, H, D)   (pages, L, ps, 1, R)
//	page_head          (2, pages, H, ps, L, D)   not supported
//
// For MHA the V half starts L*size*H*D*itemsize bytes after K, so a page's K
// and V buffers are never adjacent.
//
// # Component pools
//
// A hybrid model's component pools that are neither MHA nor MLA KV, such as
// Mamba's conv and temporal states (SGLang's MambaPoolHost, one slot per
// page), are the Component kind: Config.BufferBytes lists the bytes per
// slot of each of a page's buffers, and the pool lays out one region per
// buffer, the slots in order within each. A page is then one buffer per
// entry, GetPageBufferMeta lists them in order, and the flat page is their
// concatenation. An SWA pool is MHA-shaped and an indexer pool MLA-shaped:
// they use those kinds with page sizes of their own.
//
// # Copy and zero-copy access
//
// GetDataPage and SetFromFlatDataPage copy a page to and from a flat data
// page, in SGLang's flat order. GetPageBufferMeta returns the address and size
// of each buffer of each page instead, and PageBuffers the same buffers as
// slices, so that storage can move bytes between pool memory and a file with
// no intermediate buffer. FlatPageBuffers lists the same buffers in flat-page
// order.
//
// # Lifetime and aliasing
//
// Pointers from GetPageBufferMeta and slices from PageBuffers and
// FlatPageBuffers point into the pool's mapping. They stay valid until Close,
// and not a moment longer: Close unmaps the memory, and a later access through
// them faults. Whoever holds the page (the caller that allocated it) may read
// and write through them; the pool itself never writes to a page except in
// SetFromFlatDataPage. A storage layer given these buffers must use them only
// for the duration of its call and never retain them.
//
// A pool from Wrap lies over memory someone else mapped and owns (SGLang's
// host pool, say): the same buffers at the same offsets from its base. Its
// owner must keep that memory mapped until every store using the pool, and
// then the pool, are closed; Close only detaches such a pool and never
// unmaps it.
//
// The memory is outside the Go heap: the garbage collector never moves it,
// and New's start is aligned to the system page size, so buffers whose offsets
// and lengths are multiples of the disk's alignment are fit for O_DIRECT.
//
// # Concurrency
//
// A Pool is safe for concurrent use by multiple goroutines: allocation state
// is guarded by a lock, and Close waits for calls in progress. Page bytes are
// not guarded; callers order their own reads and writes of the same page.
// Closing a pool while another goroutine still uses a buffer it obtained
// earlier is a bug in the caller.
//
// # Errors
//
// Bad input is reported as an error wrapping one of the Err values, never a
// panic: index counts that are not whole pages, slots out of range, a flat
// page of the wrong length, a double free, an invalid Config, and any call
// after Close.
package hostcache
