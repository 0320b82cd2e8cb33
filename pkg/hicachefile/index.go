package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// location is where a batch file holds one page.
type location struct {
	file   string // batch file name in the V1 directory
	off    int64
	length int64
	crc    uint32
	fp     uint64 // fingerprint of the pool that wrote the file
}

// index maps keys to their V1 locations. It is built from the batch files in
// the V1 directory, updated by every write, and kept up to date with other
// processes' files by refresh (inotify events, or polling). A key that several files
// hold has one leading copy in entries and the others in alts, so that a bad
// copy can give way to a good one and pools of different shapes can each
// find their own.
type index struct {
	scan sync.Mutex // serialises refreshes and Clear, so a directory is read once

	mu      sync.RWMutex
	entries map[string]location
	files   map[string][]string   // batch files seen -> their keys; nil for a skipped file
	alts    map[string][]location // further copies of keys that several files hold
	pending map[string]bool       // batch files whose index could not be read yet
	mtime   unix.Timespec         // the V1 directory's mtime at the last listing
	scanned bool                  // false until the first listing, and after lost events
}

func (x *index) init() {
	x.entries = make(map[string]location)
	x.files = make(map[string][]string)
	x.alts = make(map[string][]location)
	x.pending = make(map[string]bool)
}

// Location is where BatchSetV1 stored a key's page: Length bytes at Offset
// in the batch file at Path, the page's buffers in GetPageBufferMeta order.
type Location struct {
	// Path is the batch file's path, in the store's V1 subdirectory of
	// Config.Dir.
	Path string
	// Offset is where the page starts in the file and Length how many
	// bytes it takes (the pool's PageBytes).
	Offset, Length int64
}

// Locate returns where the V1 interface holds key's page. It reports false
// for a key held only in the old format, or not at all.
func (s *Store) Locate(key string) (Location, bool) {
	if s.enter() != nil {
		return Location{}, false
	}
	defer s.life.RUnlock()
	if s.checkKey(key) != nil {
		return Location{}, false
	}
	var fp uint64
	if pi := s.pool.Load(); pi != nil {
		fp = pi.fp
	}
	locs, found := s.lookup([]string{key}, fp, true)
	if !found[0] {
		return Location{}, false
	}
	l := locs[0]
	return Location{Path: filepath.Join(s.v1Dir, l.file), Offset: l.off, Length: l.length}, true
}

// lookup returns the V1 location of each key, as index.get does for fp,
// after bringing the index up to date (see refresh): cheaply first, and
// once more, harder, when some key misses. With verify, a polling store
// also checks that the files of the keys found still exist (one fstatat per
// file), since without a watcher nothing else tells it that another process
// removed them; a read needs no such check, as its open fails.
func (s *Store) lookup(keys []string, fp uint64, verify bool) ([]location, []bool) {
	s.refresh(false)
	locs, found := s.idx.get(keys, fp)
	// A copy this pool cannot load is a miss too: a loadable one may have
	// arrived since.
	again := false
	for i := range found {
		if !found[i] || (fp != 0 && locs[i].fp != fp) {
			again = true
		}
	}
	if !again && verify && s.poll.Load() {
		checked := make(map[string]bool)
		for i, l := range locs {
			if !found[i] || checked[l.file] {
				continue
			}
			checked[l.file] = true
			var st unix.Stat_t
			if unix.Fstatat(s.v1fd(), l.file, &st, unix.AT_SYMLINK_NOFOLLOW) == unix.ENOENT {
				s.idx.forgetFile(l.file)
				s.lru.forget(fileID{name: l.file})
				again = true
			}
		}
	}
	if again {
		// Look again even when refresh listed nothing: a file found gone
		// above is forgotten already, and a concurrent scan may have
		// loaded what was missing.
		s.refresh(true)
		locs, found = s.idx.get(keys, fp)
	}
	return locs, found
}

// get returns the location of each key: the copy written by a pool with
// fingerprint fp when a file holds one, else any copy (so that a caller can
// tell a mismatch from a miss). fp 0 takes any copy.
func (x *index) get(keys []string, fp uint64) ([]location, []bool) {
	locs := make([]location, len(keys))
	found := make([]bool, len(keys))
	x.mu.RLock()
	defer x.mu.RUnlock()
	for i, k := range keys {
		locs[i], found[i] = x.entries[k]
		if found[i] && fp != 0 && locs[i].fp != fp {
			for _, alt := range x.alts[k] {
				if alt.fp == fp {
					locs[i] = alt
					break
				}
			}
		}
	}
	return locs, found
}

// add records the pages of a batch file this store just wrote; they become
// their keys' leading copies.
func (x *index) add(file string, entries []indexEntry, fp uint64) {
	keys := make([]string, len(entries))
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeFile(file) // a watcher may have loaded it already
	for i, e := range entries {
		if cur, dup := x.entries[e.key]; dup {
			x.alts[e.key] = append(x.alts[e.key], cur)
		}
		x.entries[e.key] = location{file: file, off: e.off, length: e.length, crc: e.crc, fp: fp}
		keys[i] = e.key
	}
	x.files[file] = keys
}

// forgetFile forgets every copy that the batch file name holds.
func (x *index) forgetFile(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeFile(name)
}

// removeFile forgets every copy that the batch file name holds. The caller
// holds x.mu.
func (x *index) removeFile(name string) {
	for _, k := range x.files[name] {
		x.remove(k, func(l location) bool { return l.file == name })
	}
	delete(x.files, name)
	delete(x.pending, name)
}

// drop forgets the copy of key at loc: its page proved bad or gone. The
// other pages of the same file stay, and another copy of the key, if a file
// holds one, takes its place.
func (x *index) drop(key string, loc location) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.remove(key, func(l location) bool { return l.file == loc.file && l.off == loc.off })
}

// put records a copy of key found by a scan: as its entry, or as an
// alternative when the key has one already. The caller holds x.mu.
func (x *index) put(key string, loc location) {
	if _, dup := x.entries[key]; dup {
		x.alts[key] = append(x.alts[key], loc)
		return
	}
	x.entries[key] = loc
}

// remove forgets the copies of key that match, promoting an alternative copy
// to the entry if the entry goes. The caller holds x.mu.
func (x *index) remove(key string, match func(location) bool) {
	alts := slices.DeleteFunc(x.alts[key], match)
	if cur, ok := x.entries[key]; ok && match(cur) {
		delete(x.entries, key)
		if len(alts) > 0 {
			x.entries[key], alts = alts[0], alts[1:]
		}
	}
	if len(alts) == 0 {
		delete(x.alts, key)
	} else {
		x.alts[key] = alts
	}
}

// reset forgets everything, so that the next lookup rescans.
func (x *index) reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.init()
	x.scanned = false
}

// readDirNamesAt lists, unsorted, the names in the directory open at fd:
// the directory the store reads and writes through, even if its path now
// names another.
func readDirNamesAt(fd int) ([]string, error) {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dfd), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// loadIndex reads and checks the trailer and index of the batch file name.
// The size and mtime it reports come from the same fstat, and are set
// whenever the file could be opened, corrupt or not.
func (s *Store) loadIndex(name string) (f loaded) {
	f.name = name
	fd, err := s.sys.Openat(s.v1fd(), name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		f.err = &os.PathError{Op: "open", Path: filepath.Join(s.v1Dir, name), Err: err}
		return f
	}
	defer s.sys.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.err = fmt.Errorf("hicachefile: fstat %s: %w", name, err)
		return f
	}
	f.size, f.mtime = st.Size, st.Mtim.Nano()
	if st.Size < trailerSize {
		f.err = fmt.Errorf("%w: %s is %d bytes, shorter than a trailer", ErrCorrupt, name, st.Size)
		return f
	}
	tb := make([]byte, trailerSize)
	if err := s.sys.preadv(fd, [][]byte{tb}, st.Size-trailerSize); err != nil {
		f.err = fmt.Errorf("hicachefile: read trailer of %s: %w", name, err)
		return f
	}
	t, err := parseTrailer(tb, st.Size)
	if err != nil {
		f.err = fmt.Errorf("%s: %w", name, err)
		return f
	}
	ib := make([]byte, t.indexLen)
	if err := s.sys.preadv(fd, [][]byte{ib}, t.indexOff); err != nil {
		f.err = fmt.Errorf("hicachefile: read index of %s: %w", name, err)
		return f
	}
	if f.entries, f.err = parseIndex(ib, t); f.err != nil {
		f.err = fmt.Errorf("%s: %w", name, f.err)
		f.entries = nil
		return f
	}
	f.fp = t.fp
	return f
}
