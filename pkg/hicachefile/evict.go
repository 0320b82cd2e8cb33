package hicachefile

import (
	"container/list"
	"sync"

	"golang.org/x/sys/unix"
)

// fileID names one of the store's files: a batch file in the V1 directory,
// or an old-format file in Dir.
type fileID struct {
	old  bool
	name string
}

// lruFile is a tracked file and its place in the recency list.
type lruFile struct {
	id   fileID
	size int64
}

// lru keeps the store's files in order of last use, with their sizes, so
// that the store can hold its files to Config.MaxBytes by removing the
// least recently used ones. Use is a write or a read hit in this process;
// a file found on disk enters as used at its modification time.
//
// The zero value (from a store without MaxBytes) tracks nothing.
type lru struct {
	mu    sync.Mutex
	on    bool
	order *list.List // front: most recently used; elements hold *lruFile
	files map[fileID]*list.Element
	total int64
	// stuck holds files that could not be removed: they still take space,
	// so they count against the bound, but they are no longer candidates.
	stuck      map[fileID]int64
	stuckBytes int64
}

func (l *lru) init() {
	l.on = true
	l.order = list.New()
	l.files = make(map[fileID]*list.Element)
	l.stuck = make(map[fileID]int64)
}

// unstick stops counting id as stuck. The caller holds l.mu.
func (l *lru) unstick(id fileID) {
	if size, ok := l.stuck[id]; ok {
		l.stuckBytes -= size
		delete(l.stuck, id)
	}
}

// track records a file of size bytes as just used, or, with cold, as used
// before every file tracked so far (a file found on disk by a listing).
func (l *lru) track(id fileID, size int64, cold bool) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unstick(id) // found again by a listing: a candidate once more
	if e, ok := l.files[id]; ok {
		f := e.Value.(*lruFile)
		l.total += size - f.size
		f.size = size
		if !cold {
			l.order.MoveToFront(e)
		}
		return
	}
	f := &lruFile{id: id, size: size}
	if cold {
		l.files[id] = l.order.PushBack(f)
	} else {
		l.files[id] = l.order.PushFront(f)
	}
	l.total += size
}

// touch marks a file as just used.
func (l *lru) touch(id fileID) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.files[id]; ok {
		l.order.MoveToFront(e)
	}
}

// forget stops tracking a file that is gone.
func (l *lru) forget(id fileID) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unstick(id)
	if e, ok := l.files[id]; ok {
		l.total -= e.Value.(*lruFile).size
		l.order.Remove(e)
		delete(l.files, id)
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
	for id, e := range l.files {
		if id.old == old {
			l.total -= e.Value.(*lruFile).size
			l.order.Remove(e)
			delete(l.files, id)
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

// victims takes out of the list, least recently used first, files to
// remove until the total fits in limit, skipping the protected ones.
func (l *lru) victims(limit int64, protect map[fileID]bool) []lruFile {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []lruFile
	excess := l.total + l.stuckBytes - limit
	for e := l.order.Back(); e != nil && excess > 0; {
		prev := e.Prev()
		f := e.Value.(*lruFile)
		if !protect[f.id] {
			out = append(out, *f)
			excess -= f.size
			l.total -= f.size
			l.order.Remove(e)
			delete(l.files, f.id)
		}
		e = prev
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
				s.idx.mu.Lock()
				s.idx.removeFile(f.id.name)
				s.idx.mu.Unlock()
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
