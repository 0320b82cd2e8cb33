//go:build linux

package hicachefile

import (
	"container/heap"
	"errors"
	"math"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fileID names one of the store's files: a batch file in the V1 directory,
// or an old-format file in Dir.
type fileID struct {
	old  bool
	name string
}

// lruFile is a tracked file and its place in the heap.
type lruFile struct {
	id   fileID
	size int64
	use  int64 // last use, in Unix nanoseconds
	pos  int   // index in the heap
}

// useHeap orders tracked files by last use, least recent first.
type useHeap []*lruFile

func (h useHeap) Len() int           { return len(h) }
func (h useHeap) Less(i, j int) bool { return h[i].use < h[j].use }
func (h useHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *useHeap) Push(x any) { f := x.(*lruFile); f.pos = len(*h); *h = append(*h, f) }
func (h *useHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	*h = old[:len(old)-1]
	return f
}

// lru keeps the store's files by time of last use, with their sizes, so
// that the store can hold its files to Config.MaxBytes by removing the
// least recently used ones. Use is a write or a read hit in this process,
// timed by the wall clock; a file found on disk (at New, by a listing, or
// through a watch event) enters as used at its modification time, which
// file systems keep more coarsely (a few milliseconds on ext4), so the
// order of uses closer together than that is arbitrary.
//
// The zero value (from a store without MaxBytes) tracks nothing.
type lru struct {
	mu    sync.Mutex
	on    bool
	heap  useHeap
	files map[fileID]*lruFile
	total int64
	// stuck holds files that could not be removed: they still take space,
	// so they count against the bound, but they are no longer candidates.
	stuck      map[fileID]int64
	stuckBytes int64
	// temps holds this store's temp files being written, with their sizes
	// (tempBytes in all), and foreignTemps the bytes of other writers' live
	// temp files at the last reclaim: both count against the bound.
	temps        map[string]int64
	tempBytes    int64
	foreignTemps int64
	lastReclaim  time.Time
}

func (l *lru) init() {
	l.on = true
	l.files = make(map[fileID]*lruFile)
	l.stuck = make(map[fileID]int64)
	l.temps = make(map[string]int64)
}

// startTemp counts a temp file of size bytes this store began to write.
func (l *lru) startTemp(name string, size int64) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.temps[name] = size
	l.tempBytes += size
}

// endTemp stops counting a temp file: renamed into place, or removed.
func (l *lru) endTemp(name string) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tempBytes -= l.temps[name]
	delete(l.temps, name)
}

// ownTemp reports whether name is a temp file this store is writing.
func (l *lru) ownTemp(name string) bool {
	if !l.on {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.temps[name]
	return ok
}

// setForeignTemps records the bytes of other writers' live temp files.
func (l *lru) setForeignTemps(n int64) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.foreignTemps = n
}

// over reports whether the bytes counted against the bound exceed limit.
func (l *lru) over(limit int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used() > limit
}

// reclaimDue reports whether eviction should look for dead writers' temp
// files now: at most once per reclaimEvery.
func (l *lru) reclaimDue() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.lastReclaim) < reclaimEvery {
		return false
	}
	l.lastReclaim = time.Now()
	return true
}

// used is the bytes counted against the bound. The caller holds l.mu.
func (l *lru) used() int64 { return l.total + l.stuckBytes + l.tempBytes + l.foreignTemps }

// unstick stops counting id as stuck. The caller holds l.mu.
func (l *lru) unstick(id fileID) {
	if size, ok := l.stuck[id]; ok {
		l.stuckBytes -= size
		delete(l.stuck, id)
	}
}

// track records a file of size bytes last used at use (Unix nanoseconds),
// or updates it; a later use never moves back. A use after now (the
// modification time of a file dated ahead) counts as now, so that such a
// file never outlives the files the store uses from now on.
func (l *lru) track(id fileID, size, use int64) {
	if !l.on {
		return
	}
	use = min(use, time.Now().UnixNano())
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unstick(id) // found again by a listing: a candidate once more
	if f, ok := l.files[id]; ok {
		l.total += size - f.size
		f.size = size
		if use > f.use {
			f.use = use
			heap.Fix(&l.heap, f.pos)
		}
		return
	}
	f := &lruFile{id: id, size: size, use: use}
	heap.Push(&l.heap, f)
	l.files[id] = f
	l.total += size
}

// touch marks a file as used now.
func (l *lru) touch(id fileID) {
	if !l.on {
		return
	}
	now := time.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.files[id]; ok && now > f.use {
		f.use = now
		heap.Fix(&l.heap, f.pos)
	}
}

// remove drops a tracked file. The caller holds l.mu.
func (l *lru) remove(f *lruFile) {
	l.total -= f.size
	heap.Remove(&l.heap, f.pos)
	delete(l.files, f.id)
}

// forget stops tracking a file that is gone.
func (l *lru) forget(id fileID) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unstick(id)
	if f, ok := l.files[id]; ok {
		l.remove(f)
	}
}

// forgetAll stops tracking every file of one kind (all of them for Clear,
// the batch files when the V1 directory was replaced).
func (l *lru) forgetAll(old bool) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, f := range l.files {
		if id.old == old {
			l.remove(f)
		}
	}
	for id := range l.stuck {
		if id.old == old {
			l.unstick(id)
		}
	}
}

// markStuck counts a file that could not be removed against the bound.
func (l *lru) markStuck(f lruFile) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stuck[f.id] = f.size
	l.stuckBytes += f.size
}

// oldest takes out of the heap, least recently used first, files of at
// least need bytes in all (fewer if there are not so many), skipping the
// protected ones.
func (l *lru) oldest(need int64, protect map[fileID]bool) []lruFile {
	l.mu.Lock()
	limit := l.used() - need
	l.mu.Unlock()
	return l.victims(limit, protect)
}

// victims takes out of the heap, least recently used first, files to
// remove until the total fits in limit, skipping the protected ones.
func (l *lru) victims(limit int64, protect map[fileID]bool) []lruFile {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []lruFile
	var spared []*lruFile
	for l.used() > limit && l.heap.Len() > 0 {
		f := heap.Pop(&l.heap).(*lruFile)
		if protect[f.id] {
			spared = append(spared, f)
			continue
		}
		l.total -= f.size
		delete(l.files, f.id)
		out = append(out, *f)
	}
	for _, f := range spared {
		heap.Push(&l.heap, f)
	}
	return out
}

// evict removes least recently used files, once the store's files exceed
// MaxBytes, until they take at most MaxBytes x EvictionRatio, and until the
// file system has Config.MinFreeBytes free,
// sparing the files in protect (those the calling write just made). A file that cannot be removed (a read-only or NFS file
// system, say) is counted in Stats.EvictErrors and passed over: it never
// stops the files behind it from going.
func (s *Store) evict(protect map[fileID]bool) {
	if !s.lru.on {
		return
	}
	limit, target := s.maxBytes.Load(), int64(math.MaxInt64)
	if limit == 0 {
		limit = math.MaxInt64
	} else {
		target = s.evictTarget(limit)
	}
	short := func() int64 {
		if s.cfg.MinFreeBytes == 0 {
			return 0
		}
		return s.cfg.MinFreeBytes - s.freeBytes()
	}
	need := short()
	if (s.lru.over(limit) || need > 0) && s.lru.reclaimDue() {
		// Dead writers' temp files go before anyone's pages.
		if s.reclaimTemps() == nil && need > 0 {
			need = short()
		}
	}
	// Over the bound, down to the ratio: SGLang's _evict_locked.
	for over := s.lru.over(limit); over; {
		victims := s.lru.victims(target, protect)
		if len(victims) == 0 {
			break
		}
		s.remove(victims)
	}
	if need > 0 {
		s.makeRoom(need, protect)
	}
}

// freeBytes returns the free space of Dir's file system available to this
// user, or MaxInt64 when statfs fails.
func (s *Store) freeBytes() int64 {
	var st unix.Statfs_t
	if err := s.sys.Fstatfs(s.topfd(), &st); err != nil {
		s.stats.errors.Add(1)
		return math.MaxInt64
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// makeRoom removes least recently used files, sparing protect, until need
// bytes of them are gone or none is left, and reports whether it removed
// any: for MinFreeBytes, and for a write that met a full disk.
func (s *Store) makeRoom(need int64, protect map[fileID]bool) bool {
	if !s.lru.on {
		return false
	}
	if s.lru.reclaimDue() {
		_ = s.reclaimTemps() // may free enough; pages go below all the same
	}
	victims := s.lru.oldest(need, protect)
	s.remove(victims)
	return len(victims) > 0
}

// recount brings the count of the store's files up to date with listings
// of Dir (top) and of the V1 directory (v1) just made: a counted file that
// neither holds and that is gone when looked up (another store's Clear or
// eviction removed it) leaves the count, and an old-format file of the
// store's suffix that it does not count (another process wrote it) joins
// it, as used at its modification time (clamped to now). Eviction calls it
// through reclaimTemps, at most once per reclaimEvery, so that MaxBytes
// bounds the files there are.
func (s *Store) recount(top, v1 []string) {
	if !s.lru.on {
		return
	}
	listed := make(map[fileID]bool, len(top)+len(v1))
	for _, n := range top {
		if s.isOldName(n) {
			listed[fileID{old: true, name: n}] = true
		}
	}
	for _, n := range v1 {
		if s.isBatchName(n) {
			listed[fileID{name: n}] = true
		}
	}
	var st unix.Stat_t
	for _, id := range s.lru.unlisted(listed) {
		dirfd := s.topfd()
		if !id.old {
			dirfd = s.v1fd()
		}
		if unix.Fstatat(dirfd, id.name, &st, unix.AT_SYMLINK_NOFOLLOW) != unix.ENOENT {
			continue // written since the listing, or not known gone
		}
		if id.old {
			s.lru.forget(id)
		} else {
			s.forgetBatch(id.name)
		}
	}
	for id := range listed {
		if !id.old || s.lru.tracked(id) {
			continue
		}
		if unix.Fstatat(s.topfd(), id.name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			s.lru.track(id, st.Size, st.Mtim.Nano())
		}
	}
}

// unlisted returns the counted files (stuck ones included) that listed
// does not hold.
func (l *lru) unlisted(listed map[fileID]bool) []fileID {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []fileID
	for id := range l.files {
		if !listed[id] {
			out = append(out, id)
		}
	}
	for id := range l.stuck {
		if !listed[id] {
			out = append(out, id)
		}
	}
	return out
}

// tracked reports whether the file id is counted.
func (l *lru) tracked(id fileID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.files[id]
	_, stuck := l.stuck[id]
	return ok || stuck
}

// noSpaceRetries bounds how many times a write that meets ENOSPC or EDQUOT
// makes room and tries again: another process may take the space freed
// before the retry.
const noSpaceRetries = 3

// isNoSpace reports whether err says the file system or the user's quota
// is full.
func isNoSpace(err error) bool { return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) }

// remove deletes evicted files, counting them.
func (s *Store) remove(victims []lruFile) {
	for _, f := range victims {
		dirfd := s.topfd()
		if !f.id.old {
			dirfd = s.v1fd()
			// Forget the pages first, so that no lookup finds them while
			// the file goes.
			s.idx.Forget(f.id.name)
		}
		switch err := s.sys.Unlinkat(dirfd, f.id.name, 0); err {
		case nil:
			s.stats.evicted.Add(1)
			s.stats.evictedBytes.Add(f.size)
		case unix.ENOENT:
			// Already gone (another store's Clear or eviction): not an
			// eviction of this store's, and no longer counted.
		default:
			// Still there and still taking space: the next round takes
			// more files instead.
			s.stats.evictErrors.Add(1)
			s.lru.markStuck(f)
		}
	}
}
