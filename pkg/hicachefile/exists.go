//go:build linux

package hicachefile

import (
	"path/filepath"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
	"golang.org/x/sys/unix"
)

// oldExists reports whether key's old-format file holds a page: a regular
// file, of the registered pool's PageBytes when a pool is registered.
func (s *Store) oldExists(key string, pi *poolInfo) bool {
	size, ok := s.oldSize(key)
	return ok && (pi == nil || size == pi.pageLen)
}

// Exists reports whether either format holds key, as BatchExists does.
func (s *Store) Exists(key string) bool {
	return s.BatchExists([]string{key}) == 1
}

// BatchExists returns the length of the longest prefix of keys that all
// exist, in either format. Keys are hash-chained prefixes, so a hole ends
// the prefix. Once a pool is registered, a V1 copy counts only if that pool
// can load it (same shape, dtype, layout and writer identity), and an
// old-format file only if it is PageBytes long.
func (s *Store) BatchExists(keys []string) int {
	if s.enter() != nil {
		return 0
	}
	defer s.leave()
	for i, k := range keys {
		if s.checkKey(k) != nil {
			return i
		}
	}
	// With a pool registered, a copy that pool could never load (written
	// by a pool of another shape or dtype) does not count.
	var fp uint64
	pi := s.pool.Load()
	if pi != nil {
		fp = pi.fp
	}
	have := make([]bool, len(keys))
	s.present(keys, fp, have)
	for i, k := range keys {
		if !have[i] && !s.oldExists(k, pi) {
			return i
		}
	}
	return len(keys)
}

// Locate returns where the V1 interface holds key's page. It reports false
// for a key held only in the old format, or not at all. It reads the key's
// entry from the batch file's own index.
func (s *Store) Locate(key string) (Location, bool) {
	if s.enter() != nil {
		return Location{}, false
	}
	defer s.leave()
	if s.checkKey(key) != nil {
		return Location{}, false
	}
	var fp uint64
	if pi := s.pool.Load(); pi != nil {
		fp = pi.fp
	}
	have := make([]bool, 1)
	s.present([]string{key}, fp, have)
	if !have[0] {
		return Location{}, false
	}
	hashes := []uint64{s.idx.Hash(key)}
	refs := make([]index.Ref, 1)
	s.idx.Lookup(hashes, fp, refs, nil)
	name, meta, ok := s.idx.FileOf(refs[0])
	if !ok {
		return Location{}, false
	}
	fd, _, err := s.openRegular(unix.AT_FDCWD, s.v1Dir, name)
	if err != nil {
		return Location{}, false
	}
	defer s.sys.Close(fd)
	b := make([]byte, entryFixed+len(key))
	if s.sys.preadv(fd, [][]byte{b}, meta.IndexOff+int64(refs[0].Ent)) != nil {
		return Location{}, false
	}
	k, off, length, _, err := batchfile.DecodeEntry(b, meta.IndexOff)
	if err != nil || string(k) != key {
		return Location{}, false
	}
	return Location{Path: filepath.Join(s.v1Dir, name), Offset: off, Length: length}, true
}

// present sets have[i] when the index holds a copy of keys[i] that a pool
// with fingerprint fp can load (fp 0: any copy), after bringing the index up
// to date: it applies pending inotify events (one read(2)), and when some
// key lacks such a copy, refreshes harder (see refresh) and looks again.
// A polling store (no watcher, or a network file system) also checks that
// the files of the keys found still exist, one fstatat per file, since
// without a watcher nothing else tells it that another process removed
// them. Keys are matched by digest: a key whose digest another key shares
// may be reported present (a chance of 2^-64 per key), which costs a miss
// at read time, never a wrong page.
func (s *Store) present(keys []string, fp uint64, have []bool) {
	sc := getScratch(len(keys))
	defer putScratch(sc)
	sc.hash(s.idx, keys)
	s.refresh(false)
	again := s.presentOnce(sc, fp, have)
	if !again && s.poll.Load() {
		again = s.verifyFiles(sc.refs, have)
	}
	if again {
		// Look again even when refresh listed nothing: a file found gone
		// above is forgotten already, and a concurrent scan may have
		// loaded what was missing.
		s.refresh(true)
		s.presentOnce(sc, fp, have)
	}
}

// presentOnce looks up sc.hashes and sets have; it reports whether some key
// lacks a copy for fp.
func (s *Store) presentOnce(sc *scratch, fp uint64, have []bool) bool {
	refs := sc.refs[:len(have)]
	s.idx.LookupMeta(sc.hashes[:len(have)], fp, refs, sc.metas[:len(have)])
	missing := false
	for i, r := range refs {
		have[i] = r.File != 0 && (fp == 0 || sc.metas[i].FP == fp)
		missing = missing || !have[i]
	}
	return missing
}

// verifyFiles checks, for a polling store, that the file of every present
// key still exists, and forgets the ones that are gone. It reports whether
// one was.
func (s *Store) verifyFiles(refs []index.Ref, have []bool) bool {
	gone := false
	var checked map[uint32]bool
	for i, r := range refs[:len(have)] {
		if !have[i] || checked[r.File] {
			continue
		}
		if checked == nil {
			checked = make(map[uint32]bool)
		}
		checked[r.File] = true
		name, meta, ok := s.idx.FileOf(r)
		var st unix.Stat_t
		if !ok {
			continue
		}
		// By path, as reads open: a file of a directory moved away from
		// Dir is gone.
		if err := unix.Fstatat(unix.AT_FDCWD, s.v1Dir+"/"+name, &st, unix.AT_SYMLINK_NOFOLLOW); err == unix.ENOENT || err == nil && st.Ino != meta.Ino {
			// Gone, or another file now (another store's renamed over
			// it): its pages are not the ones indexed. A file with no
			// inode recorded (one this store linked while it watched, in
			// a store that lost its watch since) cannot be told from
			// another: it is forgotten too, and loaded again, with its
			// inode, by a listing.
			s.forgetBatch(name)
			gone = true
		}
	}
	return gone
}
