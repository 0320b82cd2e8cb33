//go:build linux

package hicachefile

import (
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

// scanState is what the store knows about its listings of the V1
// directory, guarded by mu, which also serialises refreshes and Clear so
// that a directory is read once. The index itself (Store.idx) has locks of
// its own: a lookup that hits never takes mu.
type scanState struct {
	mu      sync.Mutex
	pending map[string]bool // batch files whose index could not be read yet
	mtime   unix.Timespec   // the V1 directory's mtime at the last listing
	at      time.Time       // when the last listing started
	scanned bool            // false until the first listing, and after lost events
	// fdErr is EMFILE or ENFILE while a listing or a pending file failed
	// for want of descriptors: until one succeeds, a miss may be a page
	// the index could not load, and BatchGetV1 returns it as its error.
	fdErr error
}

// reset forgets everything, so that the next lookup rescans. The caller
// holds x.mu.
func (x *scanState) reset(idx *index.Index) {
	idx.Reset()
	x.pending = make(map[string]bool)
	x.fdErr = nil
	x.scanned = false
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

// forgetBatch forgets the batch file name: its pages, and its place in the
// eviction order.
func (s *Store) forgetBatch(name string) {
	s.idx.Forget(name)
	s.lru.forget(fileID{name: name})
}

// scratch is the per-call working memory of the V1 calls, reused through
// scratchPool so that a call in steady state allocates nothing per key.
type scratch struct {
	hashes []uint64
	refs   []index.Ref
	metas  []index.Meta
	offs   []int64  // page offset of each key in its file
	crcs   []uint32 // CRC32C of each key's page as read
	order  []int32  // key positions, grouped by file
	state  []uint8  // per key: see the st* constants in v1.go
	table  []int32  // BatchSetV1's table of distinct keys
	ibuf   []byte   // index entries read back from files
	path   []byte   // the path of the batch file being opened (v1Path)
	iov    [][]byte
	owner  []int32
	runs   []readRun
	files  []fileRead
	slots  []uint64 // bitmap of destination pages
	bufs   [][]byte // the page buffers of the call's keys
	// effects are what a read found of whole files, for applyVerdicts to
	// apply to the index once the read is over.
	effects []fileEffect
	// predicted says that refs were predicted (predictRun), not looked
	// up: a copy whose entry is another key's is then a wrong guess.
	predicted bool
}

// v1Path returns the path of the batch file name in the V1 directory dir,
// built in sc's buffer without an allocation: the string is valid until
// the next v1Path, and must not be kept.
func (sc *scratch) v1Path(dir, name string) string {
	sc.path = append(append(append(sc.path[:0], dir...), '/'), name...)
	return unsafe.String(unsafe.SliceData(sc.path), len(sc.path))
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// getScratch returns a scratch with room for n keys.
func getScratch(n int) *scratch {
	sc := scratchPool.Get().(*scratch)
	if cap(sc.hashes) < n {
		sc.hashes = make([]uint64, n)
		sc.refs = make([]index.Ref, n)
		sc.metas = make([]index.Meta, n)
		sc.offs = make([]int64, n)
		sc.crcs = make([]uint32, n)
		sc.order = make([]int32, n)
		sc.state = make([]uint8, n)
	}
	sc.hashes, sc.refs, sc.metas = sc.hashes[:n], sc.refs[:n], sc.metas[:n]
	sc.offs, sc.crcs, sc.order, sc.state = sc.offs[:n], sc.crcs[:n], sc.order[:n], sc.state[:n]
	return sc
}

// hash sets sc.hashes to the digests of keys.
func (sc *scratch) hash(x *index.Index, keys []string) {
	for i, k := range keys {
		sc.hashes[i] = x.Hash(k)
	}
}

// putScratch returns sc to the pool, unless it grew too large to keep.
func putScratch(sc *scratch) {
	if cap(sc.hashes) > 1<<16 || cap(sc.ibuf) > 8<<20 || cap(sc.bufs) > 1<<18 {
		return
	}
	clear(sc.iov[:cap(sc.iov)]) // drop references to pool memory
	clear(sc.runs[:cap(sc.runs)])
	clear(sc.files[:cap(sc.files)])
	clear(sc.effects[:cap(sc.effects)])
	sc.effects = sc.effects[:0]
	sc.predicted = false
	scratchPool.Put(sc)
}

// readDirNamesAt lists, unsorted, the names in the directory open at fd:
// the directory the store reads and writes through, even if its path now
// names another. It reads the entries 256 KiB at a time: a directory of
// 100,000 batch files takes some 25 getdents64 calls, not 700.
func readDirNamesAt(fd int) ([]string, error) {
	var names []string
	err := readDirChunksAt(fd, func(chunk []string) { names = append(names, chunk...) })
	return names, err
}

// readDirChunksAt is readDirNamesAt that calls fn with the names of each
// getdents64 buffer as it is read, in a slice fn may keep, instead of
// returning them all at the end.
func readDirChunksAt(fd int, fn func(names []string)) error {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	buf := make([]byte, 256<<10)
	for {
		n, err := unix.Getdents(dfd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "getdents64", Path: ".", Err: err}
		}
		if n <= 0 {
			return nil
		}
		if _, _, names := unix.ParseDirent(buf[:n], -1, nil); len(names) > 0 {
			fn(names)
		}
	}
}
