package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
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
// the V1 directory, updated by every write, and refreshed when a lookup
// misses and the directory changed since the last scan.
type index struct {
	scan sync.Mutex // serialises refreshes, so a directory is read once

	mu      sync.RWMutex
	entries map[string]location
	files   map[string][]string // batch files seen -> their keys; nil for a skipped file
	mtime   unix.Timespec       // the V1 directory's mtime at the last scan
	scanned bool
}

func (x *index) init() {
	x.entries = make(map[string]location)
	x.files = make(map[string][]string)
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
	locs, found := s.lookup([]string{key})
	if !found[0] {
		return Location{}, false
	}
	l := locs[0]
	return Location{Path: filepath.Join(s.v1Dir, l.file), Offset: l.off, Length: l.length}, true
}

// lookup returns the V1 location of each key. When some key misses, it
// refreshes the index once if the directory changed, and looks the misses
// up again.
func (s *Store) lookup(keys []string) ([]location, []bool) {
	locs := make([]location, len(keys))
	found := make([]bool, len(keys))
	if s.idx.get(keys, locs, found) > 0 {
		// Look again even when refresh had nothing to scan: a scan that
		// another goroutine ran while this one waited for the scan lock
		// may have loaded the missing keys.
		s.refresh()
		s.idx.get(keys, locs, found)
	}
	return locs, found
}

// get fills locs and found for the keys not yet found, and returns how many
// are still missing.
func (x *index) get(keys []string, locs []location, found []bool) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	miss := 0
	for i, k := range keys {
		if found[i] {
			continue
		}
		locs[i], found[i] = x.entries[k]
		if !found[i] {
			miss++
		}
	}
	return miss
}

// add records the pages of a batch file this store just wrote.
func (x *index) add(file string, entries []indexEntry, fp uint64) {
	keys := make([]string, len(entries))
	x.mu.Lock()
	defer x.mu.Unlock()
	for i, e := range entries {
		x.entries[e.key] = location{file: file, off: e.off, length: e.length, crc: e.crc, fp: fp}
		keys[i] = e.key
	}
	x.files[file] = keys
}

// drop forgets key if it still points at loc: its page proved bad or gone.
// The other pages of the same file stay.
func (x *index) drop(key string, loc location) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if cur, ok := x.entries[key]; ok && cur.file == loc.file && cur.off == loc.off {
		delete(x.entries, key)
	}
}

// reset forgets everything, so that the next lookup rescans.
func (x *index) reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.init()
	x.scanned = false
}

// refresh rescans the V1 directory if it changed since the last scan: it
// loads the index of every batch file not seen before and forgets the files
// that are gone. It reports whether anything was scanned.
func (s *Store) refresh() bool {
	x := &s.idx
	x.scan.Lock()
	defer x.scan.Unlock()

	var st unix.Stat_t
	if err := unix.Fstat(s.v1fd, &st); err != nil {
		s.stats.errors.Add(1)
		return false
	}
	x.mu.RLock()
	unchanged := x.scanned && st.Mtim == x.mtime
	x.mu.RUnlock()
	if unchanged {
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
			if x.entries[k].file == name {
				delete(x.entries, k)
			}
		}
		delete(x.files, name)
	}
	for _, l := range got {
		var keys []string
		for _, e := range l.entries {
			if _, dup := x.entries[e.key]; !dup { // any copy of a key will do
				x.entries[e.key] = location{file: l.name, off: e.off, length: e.length, crc: e.crc, fp: l.fp}
			}
			keys = append(keys, e.key)
		}
		x.files[l.name] = keys
	}
	x.mtime = st.Mtim
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
	fd, err := unix.Openat(s.v1fd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, &os.PathError{Op: "open", Path: filepath.Join(s.v1Dir, name), Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, fmt.Errorf("hicachefile: fstat %s: %w", name, err)
	}
	if st.Size < trailerSize {
		return nil, 0, fmt.Errorf("%w: %s is %d bytes, shorter than a trailer", ErrCorrupt, name, st.Size)
	}
	tb := make([]byte, trailerSize)
	if err := preadvFull(fd, [][]byte{tb}, st.Size-trailerSize); err != nil {
		return nil, 0, fmt.Errorf("hicachefile: read trailer of %s: %w", name, err)
	}
	t, err := parseTrailer(tb, st.Size)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	ib := make([]byte, t.indexLen)
	if err := preadvFull(fd, [][]byte{ib}, t.indexOff); err != nil {
		return nil, 0, fmt.Errorf("hicachefile: read index of %s: %w", name, err)
	}
	entries, err := parseIndex(ib, t)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	return entries, t.fp, nil
}
