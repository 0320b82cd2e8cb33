//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/lru"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// v1Begin starts a V1 call: it checks that the store is open and the
// arguments, and returns the registered pool and the page buffers of
// hostIndices, bpp per key in GetPageBufferMeta order. Of each key's
// PageSize slots it checks the first and the last (hostcache's
// AppendPageBuffers, into sc), as SGLang reads only the first. On success the call
// is entered, with the pool pinned (its Close waits), and must end with
// v1End.
func (s *Store) v1Begin(keys []string, hostIndices []int64, sc *scratch) (*poolInfo, [][]byte, error) {
	if err := s.enter(); err != nil {
		return nil, nil, err
	}
	pi := s.pool.Load()
	var bufs [][]byte
	var err error
	switch {
	case pi == nil:
		err = ErrNoPool
	case pi.pool.Pin() != nil:
		// Closed by its owner: a caller's bug, an error, never a fault.
		pi, err = nil, fmt.Errorf("hicachefile: %w", hostcache.ErrClosed)
	case len(hostIndices) != len(keys)*pi.ps:
		err = fmt.Errorf("%w: %d keys need %d host indices (page size %d), got %d",
			ErrLength, len(keys), len(keys)*pi.ps, pi.ps, len(hostIndices))
	default:
		// One slot more than the buffers: readConsecutive puts a run's
		// tail there rather than copy the run's slice headers.
		if want := len(keys)*pi.bpp + 1; cap(sc.bufs) < want {
			sc.bufs = make([][]byte, 0, want)
		}
		if bufs, err = pi.pool.AppendPageBuffers(sc.bufs[:0], hostIndices); err != nil {
			err = fmt.Errorf("hicachefile: %w", err)
		} else {
			sc.bufs = bufs
		}
	}
	if err != nil {
		if pi != nil {
			pi.pool.Unpin()
		}
		s.leave()
		return nil, nil, err
	}
	return pi, bufs, nil
}

// v1End ends a V1 call that v1Begin started.
func (s *Store) v1End(pi *poolInfo) {
	pi.pool.Unpin()
	s.leave()
}

// The states of a key in a V1 call (scratch.state).
const (
	stNone     uint8 = iota // not found (yet)
	stRead                  // a copy to read: scratch.refs and metas
	stDone                  // answered
	stBadCopy               // the copy proved bad and was dropped: try another
	stGone                  // the copy's file is gone: look again after a refresh
	stMismatch              // only copies another pool wrote
	stInvalid               // not a valid key
	stRepeat                // repeats an earlier key of the call (BatchSetV1)
	stStored                // already stored (BatchSetV1)
	stAgain                 // a predicted copy that is not the key's: look it up (BatchGetV1)
)

// BatchSetV1 stores the pages at hostIndices (PageSize slots per key) in the
// registered pool under keys, moving bytes straight from pool memory to
// batch files with pwritev. It writes one batch file per MaxBatchFileBytes
// of pages and returns one bool per key.
//
// A key this store already holds as a V1 page the registered pool can
// load, or that repeats an earlier key of the call, is skipped and reported
// true; a key held only as an old-format file is written. An invalid key is
// false. When a batch file cannot be written, that file's keys and every
// later entry are false and the error is returned: the entries before it
// stand. Call-level problems (no pool, mismatched lengths, indices the pool
// rejects) return an error with every entry false.
//
// It makes no system call per key: one read(2) of pending inotify events
// per call (without a watcher, a stat of Dir and of the V1 directory
// instead), then per batch file a create with O_TMPFILE, the writes (one
// pwritev of pages and index for up to 1024 buffers and a MiB of pages;
// else one per window, and one for the index), a linkat under its final
// name and a close. With MaxBytes or MinFreeBytes, or where O_TMPFILE is
// refused, the file is written under a temp name instead, locked and then
// renamed into place: an OFD lock, a rename and an fstat more.
func (s *Store) BatchSetV1(keys []string, hostIndices []int64) ([]bool, error) {
	ok := make([]bool, len(keys))
	sc := getScratch(len(keys))
	defer putScratch(sc)
	pi, bufs, err := s.v1Begin(keys, hostIndices, sc)
	if err != nil {
		return ok, err
	}
	defer s.v1End(pi)

	// The distinct valid keys, each at its first position: a small
	// open-addressing table of positions by digest. A repeat records its
	// first position in sc.offs.
	size := 1 << bits.Len(uint(2*len(keys)))
	if cap(sc.table) < size {
		sc.table = make([]int32, size)
	}
	table := sc.table[:size]
	for i := range table {
		table[i] = -1
	}
	mask := uint64(size - 1)
	for i, k := range keys {
		if s.checkKey(k) != nil {
			sc.state[i], sc.hashes[i] = stInvalid, 0
			continue
		}
		h := s.idx.Hash(k)
		sc.hashes[i], sc.state[i] = h, stNone
		p := h & mask
		for ; table[p] >= 0; p = (p + 1) & mask {
			if j := table[p]; sc.hashes[j] == h && keys[j] == k {
				sc.state[i], sc.offs[i] = stRepeat, int64(j)
				break
			}
		}
		if sc.state[i] == stNone {
			table[p] = int32(i)
		}
	}
	// Only this store's own V1 copies for this pool count as stored: a copy
	// written by a pool of another shape or dtype, or by another store,
	// could never be loaded, and a page held only as an old-format file is
	// written again as V1, so that it gains a checksum and an identity.
	// That takes no system call per key: the index is brought up to date
	// by the pending inotify events (followDir, which also follows a
	// directory replaced under the store: with a watcher when its events
	// say so, without one at every write call), and only a polling store
	// checks that the files of the keys found still exist. A key not found
	// is simply written; no listing is needed to learn that it is new.
	s.followDir()
	s.idx.LookupMeta(sc.hashes, pi.fp, sc.refs, sc.metas)
	stored := func(i int) bool {
		return sc.state[i] == stNone && sc.refs[i].File != 0 && sc.metas[i].FP == pi.fp
	}
	if s.poll.Load() {
		checked := make([]bool, len(keys))
		for i := range keys {
			checked[i] = stored(i)
		}
		if s.verifyFiles(sc.refs, checked) {
			s.idx.LookupMeta(sc.hashes, pi.fp, sc.refs, sc.metas)
		}
	}
	pending := sc.order[:0]
	for i := range keys {
		switch {
		case stored(i):
			sc.state[i] = stStored
			ok[i] = true
			s.stats.existed.Add(1)
		case sc.state[i] == stNone:
			pending = append(pending, int32(i))
		}
	}

	if len(pending) > 0 && (s.admit(pi.pageLen) != nil || !s.roomFor(int64(len(pending))*pi.pageLen)) {
		pending = pending[:0] // refused: reported false, not an error
	}
	perFile := int(max(1, s.cfg.MaxBatchFileBytes/pi.pageLen))
	if limit := s.maxBytes.Load(); limit > 0 {
		// No batch file larger than eviction leaves room for: a call that
		// writes more than MaxBytes keeps its newest files, as SGLang's
		// page-by-page writes keep their last pages.
		perFile = min(perFile, int(max(1, s.evictTarget(limit)/pi.pageLen)))
	}
	nChunks := (len(pending) + perFile - 1) / perFile
	chunk := func(c int) []int32 { return pending[c*perFile : min(len(pending), (c+1)*perFile)] }
	var written map[lru.ID]bool
	if s.lru.On() {
		written = make(map[lru.ID]bool, nChunks)
	}
	v1fd := s.v1fd() // one directory for the whole call
	f, err := s.writeChunks(pi, v1fd, keys, sc.hashes, bufs, 0, nChunks, chunk, written)
	for try := 0; isNoSpace(err) && try < noSpaceRetries; try++ {
		// A full disk: make room for the chunks not written, by removing
		// least recently used files, and try them again; another process
		// may take the space freed first.
		need := int64(0)
		for c := f; c < nChunks; c++ {
			need += int64(len(chunk(c))) * pi.pageLen
		}
		if !s.makeRoom(need, written) {
			break
		}
		f, err = s.writeChunks(pi, v1fd, keys, sc.hashes, bufs, f, nChunks, chunk, written)
	}
	protect := written
	if limit := s.maxBytes.Load(); limit > 0 {
		// Spare only the newest of this call's files that fit: the older
		// ones may go, after every file used before the call.
		protect = s.lru.Newest(written, s.evictTarget(limit))
	}
	s.evict(protect)
	for c := range f {
		for _, i := range chunk(c) {
			ok[i] = true
		}
	}
	end := len(keys)
	if err != nil {
		s.stats.errors.Add(1)
		end = int(chunk(f)[0])
		clear(ok[end:])
	}
	// A repeat has its first copy's result.
	for i := range end {
		if sc.state[i] == stRepeat {
			ok[i] = ok[sc.offs[i]]
		}
	}
	return ok, err
}

// writeChunks writes each of the chunks from..n-1 of key positions as one
// batch file in the V1 directory open at v1fd, and returns the position of
// the first chunk that failed, with its error, or n and nil. The temp
// files, up to maxOpenFiles at a time, are written in parallel: the IO
// workers take a whole file each, since writes to different files do not
// contend for one inode's lock, and split a lone chunk between them. The
// files are then renamed into place in chunk order, stopping at the first
// failure, so that no chunk after a failed one is ever visible, not even
// for a moment; their temp files are removed.
func (s *Store) writeChunks(pi *poolInfo, v1fd int, keys []string, hashes []uint64, bufs [][]byte, from, n int, chunk func(c int) []int32, written map[lru.ID]bool) (int, error) {
	if n-from == 1 {
		// The common case, without the bookkeeping of several files.
		b, err := s.writeBatch(pi, v1fd, keys, hashes, bufs, chunk(from), s.workers)
		if err == nil {
			err = s.commitBatch(pi, v1fd, keys, hashes, bufs, chunk(from), b, written)
		}
		if err != nil {
			return from, err
		}
		return n, nil
	}
	outer := min(s.workers, n-from)
	inner := max(1, s.workers/max(1, outer))
	batches := make([]batch, n)
	errs := make([]error, n)
	var failed atomic.Int64
	failed.Store(int64(n))
	// At most maxOpenFiles temp files are open at once: each group is
	// written, then committed, before the next.
	for lo := from; lo < n && lo < int(failed.Load()); lo += maxOpenFiles {
		hi := min(lo+maxOpenFiles, n)
		parallel(outer, hi-lo, func(j int) {
			c := lo + j
			if int64(c) > failed.Load() {
				return
			}
			batches[c], errs[c] = s.writeBatch(pi, v1fd, keys, hashes, bufs, chunk(c), inner)
			for errs[c] != nil {
				f := failed.Load()
				if int64(c) >= f || failed.CompareAndSwap(f, int64(c)) {
					break
				}
			}
		})
		// Commit in order: nothing after the first failure is ever visible.
		for c := lo; c < hi; c++ {
			if int64(c) >= failed.Load() {
				// Written (n > 0: a chunk skipped once the failure was
				// known has none), named or not: its file is still open.
				if errs[c] == nil && batches[c].n > 0 {
					s.discard(batches[c].tmp)
				}
				continue
			}
			if err := s.commitBatch(pi, v1fd, keys, hashes, bufs, chunk(c), batches[c], written); err != nil {
				failed.Store(int64(c))
				errs[c] = err
			}
		}
	}
	f := int(failed.Load())
	if f == n {
		return f, nil
	}
	return f, errs[f]
}

// batch is a batch file written under its temp name, ready to commit.
type batch struct {
	tmp    tempFile
	n      int      // pages
	hashes []uint64 // digest of each key, for the index
	ents   []uint32 // offset of each key's entry in the file's index
	pages  []uint32 // number of each key's page
	meta   index.Meta
	size   int64
}

// commitBatch renames b into place and adds its pages to the index. A temp
// file that another store's reclaim removed between its create and its
// lock is written again, once, from chunk. It holds s.commitMu shared, so
// that Clear, which takes it exclusively, never runs between the rename and
// the add: a file Clear removed is never left in the index.
func (s *Store) commitBatch(pi *poolInfo, v1fd int, keys []string, hashes []uint64, bufs [][]byte, chunk []int32, b batch, written map[lru.ID]bool) error {
	listings := s.stats.listings.Load()
	name, err := s.commitBatchLocked(pi, v1fd, keys, hashes, bufs, chunk, b, written)
	if err != nil || name == "" || s.lru.On() {
		return err
	}
	// Another process's Clear may have removed the file between its link
	// and its add, with its removal's event lost to an overflow, and the
	// listing that the overflow called for may have missed the file
	// (removed) and not forgotten it (not yet added). A listing that
	// overlapped the commit is waited out (s.scan.mu, not held with
	// commitMu, which Clear takes after it), and if there was one, the file
	// is looked for. (With a bound, commitBatchLocked looks every time.)
	s.scan.mu.Lock()
	relisted := s.stats.listings.Load() != listings
	s.scan.mu.Unlock()
	var st unix.Stat_t
	if relisted && unix.Fstatat(v1fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == unix.ENOENT {
		s.forgetBatch(name)
	}
	return nil
}

// commitBatchLocked is commitBatch under s.commitMu, and returns the name
// of the file added to the index, or "" when it was forgotten at once.
func (s *Store) commitBatchLocked(pi *poolInfo, v1fd int, keys []string, hashes []uint64, bufs [][]byte, chunk []int32, b batch, written map[lru.ID]bool) (string, error) {
	s.commitMu.RLock()
	defer s.commitMu.RUnlock()
	name, err := s.place(b.tmp)
	if errors.Is(err, errTempGone) {
		if b, err = s.writeBatch(pi, v1fd, keys, hashes, bufs, chunk, s.workers); err == nil {
			name, err = s.place(b.tmp)
		}
	}
	if err != nil {
		return "", err
	}
	s.idx.AddHashed(name, b.meta, b.hashes, b.ents, b.pages)
	if gone := s.inflightEnd(name); gone || s.v1fd() != v1fd {
		// Removed already, by another process's Clear; or placed in a V1
		// directory that another call of this store found replaced
		// meanwhile (checkDir): the index now stands for the directory at
		// the path, which lacks it, and a later write of its keys must
		// land there. (checkDir swaps the descriptor before it resets the
		// index, so an add after the reset is caught here; and the old
		// descriptor, retired, stays open while this call runs.) The
		// event of a link into a directory no longer watched never comes.
		s.idx.Forget(name)
		s.dropOwn(name)
		name = ""
	} else if s.lru.On() {
		// Another process's Clear may have removed the file between the
		// rename and the add: the bound needs to know. Another file may
		// have been renamed over it, its event merged by inotify with the
		// rename's (the same mask and name) and skipped as this commit's:
		// another inode than the one written (recorded, for a temp file)
		// is not this store's file either.
		var st unix.Stat_t
		if err := unix.Fstatat(v1fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == unix.ENOENT ||
			err == nil && b.meta.Ino != 0 && st.Ino != b.meta.Ino {
			s.idx.Forget(name)
		} else {
			id := lru.ID{Name: name}
			s.lru.Track(id, b.size, time.Now().UnixNano())
			written[id] = true
		}
	}
	s.stats.sets.Add(int64(b.n))
	s.stats.setBytes.Add(int64(b.n) * pi.pageLen)
	return name, nil
}

// place gives the written batch file t a new final name, by a rename of
// its temp file or a link of its unnamed file, and returns the name, whose
// commit has begun (inflightBegin): the caller ends it. A name that exists
// already (someone made a file of that random name) is drawn again, twice
// at most.
func (s *Store) place(t tempFile) (string, error) {
	for attempt := 1; ; attempt++ {
		name := s.batchName()
		s.inflightBegin(name)
		var err error
		if t.name != "" {
			err = s.commit(t, name)
		} else {
			// The link raises one IN_CREATE event, which the watcher of
			// this store need not look into.
			s.expectOwn(name)
			if err = s.publish(t, name); err != nil {
				s.dropOwn(name)
			}
		}
		if err == nil {
			return name, nil
		}
		s.inflightEnd(name)
		if !errors.Is(err, errNameTaken) {
			return "", err
		}
		if attempt == 3 {
			s.discard(t)
			return "", err
		}
	}
}

// maxOwn bounds the names expectOwn remembers: past it (events not read for
// long), they are forgotten, and their events cost a stat each.
const maxOwn = 1 << 14

var writeBufPool = sync.Pool{New: func() any { return new(writeBuf) }}

// joinDistinct joins errs, leaving out nils and repeats: two IO workers
// that both meet ENOSPC report it once.
func joinDistinct(errs []error) error {
	var out []error
	for _, e := range errs {
		if e != nil && !slices.ContainsFunc(out, func(o error) bool { return o.Error() == e.Error() }) {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}
