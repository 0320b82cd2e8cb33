package hicachefile

import (
	"container/heap"
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
}

func (l *lru) init() {
	l.on = true
	l.files = make(map[fileID]*lruFile)
	l.stuck = make(map[fileID]int64)
}

// unstick stops counting id as stuck. The caller holds l.mu.
func (l *lru) unstick(id fileID) {
	if size, ok := l.stuck[id]; ok {
		l.stuckBytes -= size
		delete(l.stuck, id)
	}
}

// track records a file of size bytes last used at use (Unix nanoseconds),
// or updates it; a later use never moves back.
func (l *lru) track(id fileID, size, use int64) {
	if !l.on {
		return
	}
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

// victims takes out of the heap, least recently used first, files to
// remove until the total fits in limit, skipping the protected ones.
func (l *lru) victims(limit int64, protect map[fileID]bool) []lruFile {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []lruFile
	var spared []*lruFile
	for l.total+l.stuckBytes > limit && l.heap.Len() > 0 {
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

// evict removes least recently used files until the store's files fit in
// Config.MaxBytes, sparing the files in protect (those the calling write
// just made). A file that cannot be removed (a read-only or NFS file
// system, say) is counted in Stats.EvictErrors and passed over: it never
// stops the files behind it from going.
func (s *Store) evict(protect map[fileID]bool) {
	if !s.lru.on {
		return
	}
	for {
		victims := s.lru.victims(s.cfg.MaxBytes, protect)
		if len(victims) == 0 {
			return
		}
		for _, f := range victims {
			dirfd := s.dirfd
			if !f.id.old {
				dirfd = s.v1fd()
				// Forget the pages first, so that no lookup finds them
				// while the file goes.
				s.idx.Forget(f.id.name)
			}
			switch err := s.sys.Unlinkat(dirfd, f.id.name, 0); err {
			case nil, unix.ENOENT:
				s.stats.evicted.Add(1)
				s.stats.evictedBytes.Add(f.size)
			default:
				// Still there and still taking space: the next round
				// takes more files instead.
				s.stats.evictErrors.Add(1)
				s.lru.markStuck(f)
			}
		}
	}
}
