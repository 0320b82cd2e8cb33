// Package hicachefile is the file storage tier (L3) of SGLang's
// hierarchical KV cache: the Go counterpart of SGLang's HiCacheFile backend,
// which keeps KV pages as files in one directory, with a batched zero-copy
// interface of its own beside SGLang's copy interface.
//
// # Interfaces
//
// A Store serves one model's pages on one rank (Config: ModelName, TP, PP
// and CP ranks, MLA) in Config.Dir:
//
//   - Set, Get, BatchSet and BatchGet are SGLang's copy interface: the
//     caller hands in a flat data page (hostcache.Pool.GetDataPage) and
//     gets one back, one file per key, SGLang's own name and bytes.
//   - BatchSetV1 and BatchGetV1 take keys and host indices of the pool
//     registered with RegisterMemPoolHost, and move bytes straight between
//     pool memory and batch files with pwritev and preadv: no intermediate
//     buffer, one file per batch.
//   - BatchExistsV2, BatchGetV2 and BatchSetV2 are SGLang's v2 interface for
//     hybrid models, over component pools registered with RegisterPool.
//   - Exists, BatchExists and Locate ask what is stored; Clear removes this
//     store's files; Stats reports its counters.
//
// # Files
//
// With the store's suffix S (SGLang's: "_" + model, then TP, PP and CP
// parts) and a digest I of its identity:
//
//	<key>S.bin                    one page, SGLang's old format
//	v1-IS/b<16 hex>S.batch.bin    a batch file of BatchSetV1: many pages
//	.l<16 hex>-IS.tmp, v1-IS/...  files being written
//
// A batch file holds its pages back to back, then an index of one entry per
// page (key, offset, length, CRC32C), the writer's identity, and a
// checksummed trailer that records the pool's shape. The byte layout,
// the names in full and the previous format's names are in docs/format.md
// of the module's repository; how the store finds, evicts and publishes its
// files is in docs/design.md.
//
// # Rules for callers
//
// Keys. A key must be non-empty, not "." or "..", free of '/' and NUL, and
// short enough that <key>S.bin fits in 255 bytes. Any other key is
// ErrInvalidKey from Set and Get, stops BatchSet (which, like SGLang's
// batch_set, stops at its first failure), and is a false entry in the
// other batch calls. SGLang's keys (SHA-256 hex digests) always qualify.
//
// Results. The batch calls return one bool per key. A missing, corrupt or
// mismatched page is a false entry (a miss), never an error and never bytes
// handed over as good: a batch page is served only when its key, its
// CRC32C, its pool's shape and its writer's identity all match. An error is
// returned for what fails the whole call or an I/O error it cannot route
// around; errors wrap the Err values of this package and the system's
// errno, so errors.Is(err, unix.ENOSPC) works. No method panics on any
// input.
//
// Concurrency. A Store is safe for concurrent use by multiple goroutines,
// and several processes, on one host or on several over a shared mount,
// may use one directory: files are immutable once under their final
// names. Two writers of the same key both succeed; either copy may be
// served. Close waits for calls in progress; every later call returns
// ErrClosed or reports nothing stored.
//
// Zero-copy lifetime. BatchSetV1 and BatchGetV1 use the registered pool's
// page buffers only while they run and never retain them. The caller keeps
// the pool open for the duration of a call, and must not write the pages
// being stored, or read the pages being loaded, until the call returns.
// The slots of a key that BatchGetV1 reports false hold unspecified bytes.
// RegisterMemPoolHost may switch pools at any time; a call in progress
// keeps the pool it started with. A pool closed during a call (a caller's
// bug) is waited for, not unmapped under the call.
//
// Shared names. Clear removes this store's files and leaves other models'
// and ranks' files, with one exception that SGLang's names force:
// old-format names are ambiguous (key "k_x" of model "m" is key "k" of
// model "x_m"), so such a neighbour may lose its .bin files, a miss for it,
// never a wrong page. BatchGetV1 never reads an old-format file whose key
// holds '_'.
//
// Capacity. With Config.MaxBytes or MinFreeBytes (SGLang's max_size and
// min_free_space) the store evicts its least recently used files after
// each write, files it never used ranking by modification time clamped to
// now; a full disk then makes it evict and retry, up to 3 times.
// docs/design.md says exactly which files MaxBytes counts. With either set,
// only the storage owner (Config.StorageOwner) writes: the other ranks'
// writes are refused (ErrRefused from Set, false from the batch calls).
//
// Durability. A file appears under its final name only once complete, so
// readers never see half a file. Nothing is fsynced unless Config.Sync is
// set, as in SGLang: after a power loss a name may hold no data, which then
// fails its checks and is never served.
//
// Platforms. The store needs Linux (O_TMPFILE, OFD locks, inotify,
// preadv2). On other systems the package compiles and New returns an error
// wrapping errors.ErrUnsupported.
package hicachefile
