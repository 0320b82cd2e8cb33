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
// the V1 directory, updated by every write, and refreshed by any lookup that
// finds the directory changed since the last scan. A key that several files
// hold has one leading copy in entries and the others in alts, so that a bad
// copy can give way to a good one and pools of different shapes can each
// find their own.
type index struct {
	scan sync.Mutex // serialises refreshes, so a directory is read once

	mu      sync.RWMutex
	entries map[string]location
	files   map[string][]string   // batch files seen -> their keys; nil for a skipped file
	alts    map[string][]location // further copies of keys that several files hold
	mtime   unix.Timespec         // the V1 directory's mtime at the last scan
	scanned bool
}

func (x *index) init() {
	x.entries = make(map[string]location)
	x.files = make(map[string][]string)
	x.alts = make(map[string][]location)
}

// Location is where BatchSetV1 stored a key's page: Length bytes at Offset
// in the batch file at Path, the page's buffers in GetPageBufferMeta order.
type Location struct {
	Path           string
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
	locs, found := s.lookup([]string{key}, fp)
	if !found[0] {
		return Location{}, false
	}
	l := locs[0]
	return Location{Path: filepath.Join(s.v1Dir, l.file), Offset: l.off, Length: l.length}, true
}

// lookup returns the V1 location of each key, as index.get does for fp,
// after refreshing the index if the V1 directory changed since the last
// scan. That costs one fstat when nothing changed.
func (s *Store) lookup(keys []string, fp uint64) ([]location, []bool) {
	s.refresh()
	return s.idx.get(keys, fp)
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
// their keys' leading copies. before and after are the directory's mtime
// around the write: when the index was current before it, it is current
// after it, and the next lookup need not rescan for a change this store made
// itself.
func (x *index) add(file string, entries []indexEntry, fp uint64, before, after unix.Timespec) {
	keys := make([]string, len(entries))
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, e := range entries {
		if cur, dup := x.entries[e.key]; dup {
			x.alts[e.key] = append(x.alts[e.key], cur)
		}
		x.entries[e.key] = location{file: file, off: e.off, length: e.length, crc: e.crc, fp: fp}
		keys[i] = e.key
	}
	x.files[file] = keys
	if x.scanned && x.mtime == before {
		x.mtime = after
	}
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

// dirState returns the V1 directory's modification time, which every
// create, rename and unlink in it changes.
func (s *Store) dirState() (unix.Timespec, error) {
	var st unix.Stat_t
	err := unix.Fstat(s.v1fd, &st)
	return st.Mtim, err
}

// current reports whether the index reflects the directory at mtime.
func (x *index) current(mtime unix.Timespec) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.scanned && mtime == x.mtime
}

// refresh rescans the V1 directory if it changed since the last scan: it
// loads the index of every batch file not seen before and forgets the files
// that are gone. It reports whether anything was scanned.
func (s *Store) refresh() bool {
	x := &s.idx
	if m, err := s.dirState(); err == nil && x.current(m) {
		return false
	}
	x.scan.Lock()
	defer x.scan.Unlock()
	mtime, err := s.dirState()
	if err != nil {
		s.stats.errors.Add(1)
		return false
	}
	if x.current(mtime) {
		return false // another goroutine scanned while this one waited
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
	names, err := readDirNames(s.v1Dir)
	if err != nil {
		s.stats.errors.Add(1)
		return false
	}

	x.mu.RLock()
	var fresh []string
	present := make(map[string]bool, len(names))
	for _, n := range names {
		if !s.isBatchName(n) {
			continue
		}
		present[n] = true
		if _, seen := x.files[n]; !seen {
			fresh = append(fresh, n)
		}
	}
	x.mu.RUnlock()

	type loaded struct {
		name    string
		entries []indexEntry
		fp      uint64
	}
	var got []loaded
	for _, n := range fresh {
		entries, fp, err := s.loadIndex(n)
		if err != nil {
			if !os.IsNotExist(err) {
				s.stats.skippedFiles.Add(1)
			}
			entries = nil
		}
		got = append(got, loaded{n, entries, fp})
	}

	x.mu.Lock()
	defer x.mu.Unlock()
	for name, keys := range x.files {
		if present[name] || !known[name] {
			continue
		}
		for _, k := range keys {
			x.remove(k, func(l location) bool { return l.file == name })
		}
		delete(x.files, name)
	}
	for _, l := range got {
		var keys []string
		for _, e := range l.entries {
			x.put(e.key, location{file: l.name, off: e.off, length: e.length, crc: e.crc, fp: l.fp})
			keys = append(keys, e.key)
		}
		x.files[l.name] = keys
	}
	x.mtime = mtime
	x.scanned = true
	return true
}

// readDirNames lists the names in dir, unsorted.
func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// loadIndex reads and checks the trailer and index of the batch file name.
func (s *Store) loadIndex(name string) ([]indexEntry, uint64, error) {
	fd, err := s.sys.Openat(s.v1fd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, &os.PathError{Op: "open", Path: filepath.Join(s.v1Dir, name), Err: err}
	}
	defer s.sys.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, fmt.Errorf("hicachefile: fstat %s: %w", name, err)
	}
	if st.Size < trailerSize {
		return nil, 0, fmt.Errorf("%w: %s is %d bytes, shorter than a trailer", ErrCorrupt, name, st.Size)
	}
	tb := make([]byte, trailerSize)
	if err := s.sys.preadv(fd, [][]byte{tb}, st.Size-trailerSize); err != nil {
		return nil, 0, fmt.Errorf("hicachefile: read trailer of %s: %w", name, err)
	}
	t, err := parseTrailer(tb, st.Size)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	ib := make([]byte, t.indexLen)
	if err := s.sys.preadv(fd, [][]byte{ib}, t.indexOff); err != nil {
		return nil, 0, fmt.Errorf("hicachefile: read index of %s: %w", name, err)
	}
	entries, err := parseIndex(ib, t)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	return entries, t.fp, nil
}
