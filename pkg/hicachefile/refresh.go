package hicachefile

import (
	"errors"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// refresh brings the index up to date with the V1 directory, as cheaply as
// it can, and reports whether the index may have changed. miss says that a
// lookup just missed, which justifies more work.
//
// With a watcher, pending inotify events are applied: batch files renamed
// or written in are loaded, files removed are forgotten. That costs one
// read(2) when nothing happened. The directory is listed in full only before
// the first lookup, after Clear, after the kernel dropped events, and after
// checkDir found the directory replaced (checked on misses). When the store
// polls (no inotify, or a network file system whose other clients raise no
// event here), a miss lists the directory again if its mtime changed since
// the last listing. A miss also retries the files whose index could not be
// read for a reason other than corruption.
func (s *Store) refresh(miss bool) bool {
	x := &s.idx
	x.scan.Lock()
	defer x.scan.Unlock()

	changed := miss && s.checkDir()
	if s.watch != nil {
		changed = s.applyEvents() || changed
	}
	x.mu.RLock()
	full, retry := !x.scanned, miss && len(x.pending) > 0
	x.mu.RUnlock()
	if !full && miss && s.poll.Load() {
		var st unix.Stat_t
		if err := unix.Fstat(s.v1fd(), &st); err != nil {
			s.stats.errors.Add(1)
		} else {
			x.mu.RLock()
			full = st.Mtim != x.mtime
			x.mu.RUnlock()
		}
	}
	switch {
	case full:
		return s.listDir() || changed
	case retry:
		x.mu.RLock()
		names := make([]string, 0, len(x.pending))
		for n := range x.pending {
			names = append(names, n)
		}
		x.mu.RUnlock()
		s.merge(s.load(names))
		return true
	}
	return changed
}

// checkDir reopens the V1 directory when the one the store holds open was
// removed or replaced under it (an operator's rm -rf, a move): otherwise
// every write would go on failing into a dead directory, and files other
// stores write at the path would never be seen. It costs an fstat and a
// stat, so refresh calls it on misses only. It reports whether it reopened.
// The caller holds x.scan.
func (s *Store) checkDir() bool {
	fd := s.v1fd()
	var held, cur unix.Stat_t
	if err := unix.Fstat(fd, &held); err != nil {
		return false
	}
	if unix.Stat(s.v1Dir, &cur) == nil && held.Nlink > 0 && cur.Dev == held.Dev && cur.Ino == held.Ino {
		return false
	}
	nfd, err := openDir(s.v1Dir)
	if err != nil {
		s.stats.errors.Add(1)
		return false
	}
	if s.cfg.Sync {
		_ = unix.Fsync(s.dirfd)
	}
	s.retired = append(s.retired, fd)
	s.v1.Store(int64(nfd))
	if s.watch != nil && s.watch.rewatch(s.v1Dir) != nil {
		_ = s.watch.close()
		s.watch = nil
	}
	if s.watch == nil && !s.cfg.NoWatch {
		s.watch, _ = newWatcher(s.v1Dir)
	}
	s.poll.Store(s.watch == nil || isNetworkFS(nfd))
	s.idx.reset() // everything it knew was in the old directory
	s.lru.forgetAll(false)
	return true
}

// applyEvents applies the watcher's pending events to the index. The caller
// holds x.scan.
func (s *Store) applyEvents() bool {
	x := &s.idx
	var gone, fresh, written []string
	overflow, lost := s.watch.drain(func(name string, ev event) {
		if !s.isBatchName(name) {
			return
		}
		switch ev {
		case evGone:
			gone = append(gone, name)
		case evAppeared:
			fresh = append(fresh, name)
		case evWritten:
			written = append(written, name)
		}
	})
	if lost {
		_ = s.watch.close()
		s.watch = nil
		s.poll.Store(true)
	}
	x.mu.Lock()
	if overflow || lost {
		x.scanned = false
	}
	for _, n := range gone {
		x.removeFile(n)
		s.lru.forget(fileID{name: n})
	}
	// A file renamed in by this store is usually known already (if its
	// event comes first, it is loaded here and add replaces the entries).
	// One written in place is read again: its old index no longer holds.
	fresh = slices.DeleteFunc(fresh, func(n string) bool { _, known := x.files[n]; return known })
	x.mu.Unlock()
	fresh = append(fresh, written...)
	s.merge(s.load(fresh))
	return len(gone) > 0 || len(fresh) > 0
}

// loaded is the outcome of reading one batch file's index.
type loaded struct {
	name    string
	entries []indexEntry
	fp      uint64
	err     error
	size    int64 // file size and mtime (Unix ns), for eviction
	mtime   int64
}

// load reads the indexes of the batch files names.
func (s *Store) load(names []string) []loaded {
	out := make([]loaded, len(names))
	for i, n := range names {
		out[i] = s.loadIndex(n)
	}
	return out
}

// merge puts loaded indexes into the index, replacing what it held of the
// same files. A file that fails its checks is remembered as skipped, so it
// is not read again; one that could not be read for another reason (EMFILE,
// EIO) is retried at a later miss; one that is gone is forgotten.
func (s *Store) merge(files []loaded) {
	// Files found on disk join the eviction order as used at their mtime.
	for _, f := range files {
		if f.err == nil || errors.Is(f.err, ErrCorrupt) {
			s.lru.track(fileID{name: f.name}, f.size, f.mtime)
		}
	}
	x := &s.idx
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, f := range files {
		x.removeFile(f.name)
		switch {
		case f.err == nil:
			keys := make([]string, len(f.entries))
			for i, e := range f.entries {
				x.put(e.key, location{file: f.name, off: e.off, length: e.length, crc: e.crc, fp: f.fp})
				keys[i] = e.key
			}
			x.files[f.name] = keys
		case errors.Is(f.err, errNotRegular):
			x.files[f.name] = nil // counted in Stats.SpecialFiles; never read
		case errors.Is(f.err, ErrCorrupt):
			x.files[f.name] = nil
			s.stats.skippedFiles.Add(1)
		case errors.Is(f.err, os.ErrNotExist):
		default:
			x.pending[f.name] = true
			s.stats.errors.Add(1)
		}
	}
}

// listDir lists the V1 directory, loads the batch files the index does not
// know, and forgets the ones that are gone. The caller holds x.scan.
func (s *Store) listDir() bool {
	x := &s.idx
	var st unix.Stat_t
	if err := unix.Fstat(s.v1fd(), &st); err != nil {
		s.stats.errors.Add(1)
		return false
	}
	// Only files indexed before the listing can be gone when the listing
	// lacks them: this store's writes rename a file into place before
	// adding it, so one added later may simply be newer than the listing.
	x.mu.RLock()
	known := make(map[string]bool, len(x.files))
	for name := range x.files {
		known[name] = true
	}
	x.mu.RUnlock()
	names, err := readDirNamesAt(s.v1fd())
	if err != nil {
		s.stats.errors.Add(1)
		return false
	}
	s.stats.listings.Add(1)

	present := make(map[string]bool, len(names))
	var fresh []string
	x.mu.RLock()
	for _, n := range names {
		if !s.isBatchName(n) {
			continue
		}
		present[n] = true
		if _, seen := x.files[n]; !seen { // pending files are not in x.files
			fresh = append(fresh, n)
		}
	}
	x.mu.RUnlock()

	got := s.load(fresh)
	x.mu.Lock()
	for name := range x.files {
		if known[name] && !present[name] {
			x.removeFile(name)
			s.lru.forget(fileID{name: name})
		}
	}
	x.mtime = st.Mtim
	x.scanned = true
	x.mu.Unlock()
	s.merge(got)
	return true
}
