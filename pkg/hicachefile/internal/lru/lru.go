// Package lru keeps a store's files by time of last use, with their
// sizes and the bytes of temp files being written, so that the store can
// hold its files to a bound by removing the least recently used first. It
// knows file names and sizes only: removing a file is the caller's. An LRU
// is safe for concurrent use.
package lru

import (
	"cmp"
	"container/heap"
	"slices"
	"sync"
	"time"
)

// ReclaimEvery is how often, at most, ReclaimDue says that a look for
// dead writers' temp files is due.
const ReclaimEvery = time.Second

// ID names one of the store's files: a batch file in the V1 directory,
// or an old-format file in Dir.
type ID struct {
	// Old is set for an old-format file in Dir.
	Old bool
	// Name is the file's name in its directory.
	Name string
}

// File is a tracked file and its place in the heap.
type File struct {
	// ID names the file.
	ID ID
	// Size is the file's size in bytes.
	Size int64
	// Use is the file's last use, in Unix nanoseconds.
	Use int64
	pos int // index in the heap
}

// useHeap orders tracked files by last use, least recent first.
type useHeap []*File

func (h useHeap) Len() int           { return len(h) }
func (h useHeap) Less(i, j int) bool { return h[i].Use < h[j].Use }
func (h useHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *useHeap) Push(x any) { f := x.(*File); f.pos = len(*h); *h = append(*h, f) }
func (h *useHeap) Pop() any {
	old := *h
	f := old[len(old)-1]
	*h = old[:len(old)-1]
	return f
}

// LRU keeps the store's files by time of last use, with their sizes, so
// that the store can hold its files to Config.MaxBytes by removing the
// least recently used ones. Use is a write or a read hit in this process,
// timed by the wall clock; a file found on disk (at New, by a listing, or
// through a watch event) enters as used at its modification time, which
// file systems keep more coarsely (a few milliseconds on ext4), so the
// order of uses closer together than that is arbitrary.
//
// The zero value (from a store without MaxBytes) tracks nothing.
type LRU struct {
	mu    sync.Mutex
	on    bool // set by Init
	heap  useHeap
	files map[ID]*File
	total int64
	// stuck holds files that could not be removed: they still take space,
	// so they count against the bound, but they are no longer candidates.
	stuck      map[ID]int64
	stuckBytes int64
	// temps holds this store's temp files being written, with their sizes
	// (tempBytes in all), and foreignTemps the bytes of other writers' live
	// temp files at the last reclaim: both count against the bound.
	temps        map[string]int64
	tempBytes    int64
	foreignTemps int64
	lastReclaim  time.Time
}

// Init turns tracking on: the zero LRU tracks nothing.
func (l *LRU) Init() {
	l.on = true
	l.files = make(map[ID]*File)
	l.stuck = make(map[ID]int64)
	l.temps = make(map[string]int64)
}

// StartTemp counts a temp file of size bytes this store began to write.
func (l *LRU) StartTemp(name string, size int64) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.temps[name] = size
	l.tempBytes += size
}

// EndTemp stops counting a temp file: renamed into place, or removed.
func (l *LRU) EndTemp(name string) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tempBytes -= l.temps[name]
	delete(l.temps, name)
}

// OwnTemp reports whether name is a temp file this store is writing.
func (l *LRU) OwnTemp(name string) bool {
	if !l.on {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.temps[name]
	return ok
}

// SetForeignTemps records the bytes of other writers' live temp files.
func (l *LRU) SetForeignTemps(n int64) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.foreignTemps = n
}

// Over reports whether the bytes counted against the bound exceed limit.
func (l *LRU) Over(limit int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used() > limit
}

// ReclaimDue reports whether eviction should look for dead writers' temp
// files now: at most once per ReclaimEvery.
func (l *LRU) ReclaimDue() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.lastReclaim) < ReclaimEvery {
		return false
	}
	l.lastReclaim = time.Now()
	return true
}

// used is the bytes counted against the bound. The caller holds l.mu.
func (l *LRU) used() int64 { return l.total + l.stuckBytes + l.tempBytes + l.foreignTemps }

// unstick stops counting id as stuck. The caller holds l.mu.
func (l *LRU) unstick(id ID) {
	if size, ok := l.stuck[id]; ok {
		l.stuckBytes -= size
		delete(l.stuck, id)
	}
}

// Track records a file of size bytes last used at use (Unix nanoseconds),
// or updates it; a later use never moves back. A use after now (the
// modification time of a file dated ahead) counts as now when the file
// enters, and not at all for a file already counted, so that such a file
// never outlives the files used from now on, however often it is found.
func (l *LRU) Track(id ID, size, use int64) {
	if !l.on {
		return
	}
	now := time.Now().UnixNano()
	ahead := use > now
	use = min(use, now)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unstick(id) // found again by a listing: a candidate once more
	if f, ok := l.files[id]; ok {
		l.total += size - f.Size
		f.Size = size
		if use > f.Use && !ahead {
			f.Use = use
			heap.Fix(&l.heap, f.pos)
		}
		return
	}
	f := &File{ID: id, Size: size, Use: use}
	heap.Push(&l.heap, f)
	l.files[id] = f
	l.total += size
}

// Unlisted returns the files counted (stuck ones included) that listed
// does not hold.
func (l *LRU) Unlisted(listed map[ID]bool) []ID {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ID
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

// Counts reports whether the file id is counted, stuck or not.
func (l *LRU) Counts(id ID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.files[id]
	_, stuck := l.stuck[id]
	return ok || stuck
}

// Touch marks a file as used now.
func (l *LRU) Touch(id ID) {
	if !l.on {
		return
	}
	now := time.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.files[id]; ok && now > f.Use {
		f.Use = now
		heap.Fix(&l.heap, f.pos)
	}
}

// remove drops a tracked file. The caller holds l.mu.
func (l *LRU) remove(f *File) {
	l.total -= f.Size
	heap.Remove(&l.heap, f.pos)
	delete(l.files, f.ID)
}

// Forget stops tracking a file that is gone.
func (l *LRU) Forget(id ID) {
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

// ForgetAll stops tracking every file of one kind (all of them for Clear,
// the batch files when the V1 directory was replaced).
func (l *LRU) ForgetAll(old bool) {
	if !l.on {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, f := range l.files {
		if id.Old == old {
			l.remove(f)
		}
	}
	for id := range l.stuck {
		if id.Old == old {
			l.unstick(id)
		}
	}
}

// MarkStuck counts a file that could not be removed against the bound.
func (l *LRU) MarkStuck(f File) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stuck[f.ID] = f.Size
	l.stuckBytes += f.Size
}

// Oldest takes out of the heap, least recently used first, files of at
// least need bytes in all (fewer if there are not so many), skipping the
// protected ones.
func (l *LRU) Oldest(need int64, protect map[ID]bool) []File {
	l.mu.Lock()
	limit := l.used() - need
	l.mu.Unlock()
	return l.Victims(limit, protect)
}

// Victims takes out of the heap, least recently used first, files to
// remove until the total fits in limit, skipping the protected ones.
func (l *LRU) Victims(limit int64, protect map[ID]bool) []File {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []File
	var spared []*File
	for l.used() > limit && l.heap.Len() > 0 {
		f := heap.Pop(&l.heap).(*File)
		if protect[f.ID] {
			spared = append(spared, f)
			continue
		}
		l.total -= f.Size
		delete(l.files, f.ID)
		out = append(out, *f)
	}
	for _, f := range spared {
		heap.Push(&l.heap, f)
	}
	return out
}

// On reports whether the LRU tracks files (Init was called).
func (l *LRU) On() bool { return l.on }

// Used returns the bytes counted against the bound: tracked files, stuck
// files, this store's temp files being written and other writers' live
// ones.
func (l *LRU) Used() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.used()
}

// Tracked returns the bytes of the tracked files alone.
func (l *LRU) Tracked() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Peek returns the least recently used file not in protect, leaving it
// tracked, and false when there is none.
func (l *LRU) Peek(protect map[ID]bool) (File, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var spared []*File
	var out File
	found := false
	for l.heap.Len() > 0 {
		f := heap.Pop(&l.heap).(*File)
		spared = append(spared, f)
		if !protect[f.ID] {
			out, found = *f, true
			break
		}
	}
	for _, f := range spared {
		heap.Push(&l.heap, f)
	}
	return out, found
}

// Take stops tracking the file id, for its removal, and returns it; false
// when it is not tracked (taken or forgotten meanwhile).
func (l *LRU) Take(id ID) (File, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.files[id]
	if f == nil {
		return File{}, false
	}
	l.remove(f)
	return *f, true
}

// Newest returns, of the tracked files in ids, the most recently used ones
// whose sizes add up to at most budget, and always the most recent one.
func (l *LRU) Newest(ids map[ID]bool, budget int64) map[ID]bool {
	l.mu.Lock()
	fs := make([]File, 0, len(ids))
	for id := range ids {
		if f := l.files[id]; f != nil {
			fs = append(fs, *f)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(fs, func(a, b File) int { return cmp.Compare(b.Use, a.Use) })
	out := make(map[ID]bool, len(fs))
	for i, f := range fs {
		if i > 0 && f.Size > budget {
			break
		}
		out[f.ID] = true
		budget -= f.Size
	}
	return out
}
