package hicachefile

import "sync/atomic"

// Stats is a snapshot of a store's counters since New, those of the
// component pools registered with RegisterPool included.
type Stats struct {
	Sets     int64 // pages written, by either interface
	SetBytes int64 // bytes of the pages written
	Existed  int64 // pages not written because the key already existed
	Gets     int64 // pages asked for, by either interface
	GetBytes int64 // bytes of the pages served
	Hits     int64 // pages served
	Misses   int64 // pages not served: missing, corrupt, mismatched or failed
	Corrupt  int64 // pages that failed a size or CRC32C check
	Mismatch int64 // V1 pages written by a pool of another shape or dtype, or by a store of another identity
	// SkippedFiles counts batch files whose trailer or index failed its
	// checks; none of their pages is served.
	SkippedFiles int64
	Errors       int64 // I/O errors other than a missing file
	// SpecialFiles counts the times a store name was found held by a FIFO,
	// socket, device, directory or symlink: a miss. Such a file is opened
	// only with O_NONBLOCK|O_NOFOLLOW, if at all, and never read.
	SpecialFiles int64
	// DirectBytes counts the bytes BatchGetV1 read with O_DIRECT (see
	// Config.DirectIO).
	DirectBytes int64
	// Evicted and EvictedBytes count the files this store removed to keep
	// within Config.MaxBytes or MinFreeBytes (not those it found already
	// gone); EvictErrors counts the files that could not be removed and
	// were passed over.
	Evicted, EvictedBytes, EvictErrors int64
	// ReclaimedTemps counts temp files of dead writers of this store's
	// suffix that the store removed (at New and during eviction).
	ReclaimedTemps int64
	// Listings counts full listings of the V1 directory: one when the store
	// opens, then after Clear, after lost inotify events, after the
	// directory was replaced under the store, and, when polling, after a
	// miss in a changed directory.
	Listings int64
}

// add adds o's counts to st's.
func (st *Stats) add(o Stats) {
	st.Sets += o.Sets
	st.SetBytes += o.SetBytes
	st.Existed += o.Existed
	st.Gets += o.Gets
	st.GetBytes += o.GetBytes
	st.Hits += o.Hits
	st.Misses += o.Misses
	st.Corrupt += o.Corrupt
	st.Mismatch += o.Mismatch
	st.SkippedFiles += o.SkippedFiles
	st.Errors += o.Errors
	st.SpecialFiles += o.SpecialFiles
	st.DirectBytes += o.DirectBytes
	st.Evicted += o.Evicted
	st.EvictedBytes += o.EvictedBytes
	st.EvictErrors += o.EvictErrors
	st.ReclaimedTemps += o.ReclaimedTemps
	st.Listings += o.Listings
}

// counters are the live Stats.
type counters struct {
	sets, setBytes, existed, gets, getBytes, hits, misses atomic.Int64
	corrupt, mismatch, skippedFiles, errors, listings     atomic.Int64
	directBytes, evicted, evictedBytes, evictErrors       atomic.Int64
	specialFiles, reclaimedTemps                          atomic.Int64
}
