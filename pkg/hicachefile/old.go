//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Set stores value as key's old-format file, SGLang's key+suffix+".bin"
// holding the raw flat page. A key whose file already exists with
// len(value) bytes is skipped, as SGLang's set does; a file of another size
// is replaced, and so is anything else under the name (a FIFO, socket,
// device, symlink or empty directory). The file appears whole or not at all: it is written
// under a temp name and renamed into place.
func (s *Store) Set(key string, value []byte) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.followDir()
	return s.set(key, value)
}

func (s *Store) set(key string, value []byte) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	// A file of another size (a 0-byte file a power cut left, say) is not
	// the page: it is replaced, atomically, by the rename below.
	if size, ok := s.oldSize(key); ok && size == int64(len(value)) {
		s.stats.existed.Add(1)
		return nil
	}
	if err := s.admit(int64(len(value))); err != nil {
		return err
	}
	if !s.roomFor(int64(len(value))) {
		return fmt.Errorf("%w: %d bytes would leave less than MinFreeBytes %d free", ErrRefused, len(value), s.cfg.MinFreeBytes)
	}
	write := func() error {
		return s.writeFile(s.topfd(), s.dir, s.oldName(key), int64(len(value)), func(fd int) error {
			return s.sys.pwritev(fd, [][]byte{value}, 0)
		})
	}
	err := write()
	for try := 0; isNoSpace(err) && try < noSpaceRetries && s.makeRoom(int64(len(value)), nil); try++ {
		err = write() // a full disk makes room, then tries again
	}
	if err != nil {
		s.stats.errors.Add(1)
		return err
	}
	s.stats.sets.Add(1)
	s.stats.setBytes.Add(int64(len(value)))
	id := fileID{old: true, name: s.oldName(key)}
	s.lru.track(id, int64(len(value)), time.Now().UnixNano())
	s.evict(map[fileID]bool{id: true})
	return nil
}

// writeFile creates the file name in the directory dirfd (at path dir):
// write fills a new temp file of size bytes, which is then renamed over
// name. On failure the temp file is removed and name is untouched.
func (s *Store) writeFile(dirfd int, dir, name string, size int64, write func(fd int) error) error {
	t, err := s.writeTemp(dirfd, dir, size, write)
	if err != nil {
		return err
	}
	err = s.commit(t, name)
	if errors.Is(err, errTempGone) {
		// Reclaimed by another store between its create and its lock:
		// write it again, once.
		if t, err = s.writeTemp(dirfd, dir, size, write); err == nil {
			err = s.commit(t, name)
		}
	}
	return err
}

// tempFile is a temp file written and still open: its descriptor holds the
// lock that tells other stores its writer is alive, until commit or discard
// closes it.
type tempFile struct {
	dirfd int
	dir   string
	name  string
	fd    int
	size  int64
}

// writeTemp fills a new temp file of size bytes in dirfd with write and
// returns it, open and locked (see openTemp). On failure the temp file is
// removed. Until commit or discard, its size counts toward MaxBytes.
func (s *Store) writeTemp(dirfd int, dir string, size int64, write func(fd int) error) (tempFile, error) {
	t, err := s.openTemp(dirfd, dir, size)
	if err != nil {
		return t, err
	}
	return s.fillTemp(t, write)
}

// fillTemp fills the temp file t, named or not, with write, and makes its
// data durable with Config.Sync. On failure t is removed.
func (s *Store) fillTemp(t tempFile, write func(fd int) error) (tempFile, error) {
	dir := t.dir
	if t.name != "" {
		s.lru.startTemp(t.name, t.size)
	}
	err := write(t.fd)
	if err == nil && s.cfg.Sync {
		err = s.sys.Fdatasync(t.fd)
	}
	if err != nil {
		s.discard(t)
		what := filepath.Join(dir, t.name)
		if t.name == "" {
			what = "a temp file in " + dir
		}
		return t, fmt.Errorf("hicachefile: write %s: %w", what, err)
	}
	return t, nil
}

// discard removes and closes a temp file that will not be committed.
func (s *Store) discard(t tempFile) {
	if t.name != "" {
		_ = s.sys.Unlinkat(t.dirfd, t.name, 0)
	}
	_ = s.sys.Close(t.fd)
	s.lru.endTemp(t.name)
}

// commit renames the temp file t over name, then closes it, so that its
// lock is held until it has its final name. On failure t is removed, and
// name too if it was renamed into place but could not be made durable or
// closed cleanly.
func (s *Store) commit(t tempFile, name string) error {
	err := s.sys.Renameat(t.dirfd, t.name, t.dirfd, name)
	if err == unix.EISDIR && s.sys.Unlinkat(t.dirfd, name, unix.AT_REMOVEDIR) == nil {
		// An empty directory planted under the name, which rename cannot
		// replace: removed, as Clear would, so that no one can make the
		// key unwritable that way.
		err = s.sys.Renameat(t.dirfd, t.name, t.dirfd, name)
	}
	if err != nil {
		s.discard(t)
		if err == unix.ENOENT {
			return fmt.Errorf("hicachefile: rename %s to %s: %w: %w", t.name, filepath.Join(t.dir, name), errTempGone, err)
		}
		return fmt.Errorf("hicachefile: rename %s to %s: %w", t.name, filepath.Join(t.dir, name), err)
	}
	defer s.lru.endTemp(t.name)
	return s.closeCommitted(t, name)
}

// closeCommitted makes the file t, now at name, durable when Config.Sync
// asks for it, and closes it. On failure name is removed.
func (s *Store) closeCommitted(t tempFile, name string) error {
	if s.cfg.Sync {
		if err := s.sys.Fsync(t.dirfd); err != nil {
			_ = s.sys.Unlinkat(t.dirfd, name, 0)
			_ = s.sys.Close(t.fd)
			return fmt.Errorf("hicachefile: fsync %s: %w", t.dir, err)
		}
	}
	if err := s.sys.Close(t.fd); err != nil {
		_ = s.sys.Unlinkat(t.dirfd, name, 0)
		return fmt.Errorf("hicachefile: close %s: %w", filepath.Join(t.dir, name), err)
	}
	return nil
}

// Get reads key's old-format file into dst, which must be exactly the
// file's size. A missing file is ErrNotFound; a file of another size is
// ErrCorrupt, and dst is then left untouched.
func (s *Store) Get(key string, dst []byte) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.stats.gets.Add(1)
	err := s.readOld(key, [][]byte{dst}, int64(len(dst)))
	s.count(err, int64(len(dst)))
	return err
}

// count records the outcome of reading one page of n bytes.
func (s *Store) count(err error, n int64) {
	s.classify(err)
	if err == nil {
		s.stats.hits.Add(1)
		s.stats.getBytes.Add(n)
	} else {
		s.stats.misses.Add(1)
	}
}

// classify counts a failed page read as corrupt or as an I/O error; a miss
// or an invalid key is neither.
func (s *Store) classify(err error) {
	switch {
	case err == nil, errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalidKey):
	case errors.Is(err, ErrCorrupt):
		s.stats.corrupt.Add(1)
	default:
		s.stats.errors.Add(1)
	}
}

// readOld reads key's old-format file, which must be exactly size bytes,
// into bufs (size bytes in all), in order.
func (s *Store) readOld(key string, bufs [][]byte, size int64) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	name := s.oldName(key)
	fd, st, err := s.openRegular(unix.AT_FDCWD, s.dir, name) // by path: a Dir moved away is not read
	if err == unix.ENOENT {
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if err != nil {
		return err
	}
	defer s.sys.Close(fd)
	if st.Size != size {
		return fmt.Errorf("%w: %s is %d bytes, want %d", ErrCorrupt, filepath.Join(s.dir, name), st.Size, size)
	}
	if err := s.sys.preadv(fd, bufs, 0); err != nil {
		return fmt.Errorf("hicachefile: read %s: %w", filepath.Join(s.dir, name), err)
	}
	s.lru.touch(fileID{old: true, name: name})
	return nil
}

// BatchSet stores each value under its key with Set, in order, and stops at
// the first failure: that entry and every later one are false, and the
// failure is returned.
func (s *Store) BatchSet(keys []string, values [][]byte) ([]bool, error) {
	ok := make([]bool, len(keys))
	if len(keys) != len(values) {
		return ok, fmt.Errorf("%w: %d keys, %d values", ErrLength, len(keys), len(values))
	}
	if err := s.enter(); err != nil {
		return ok, err
	}
	defer s.leave()
	s.followDir()
	for i, k := range keys {
		if err := s.set(k, values[i]); err != nil {
			return ok, err
		}
		ok[i] = true
	}
	return ok, nil
}

// BatchGet reads each key's page into the matching dst with Get and reports
// every key: true where dst now holds the page. Misses and bad files are
// false, never an error; only a call-level problem is, such as running out
// of descriptors (EMFILE, ENFILE) after waiting for some to be closed.
func (s *Store) BatchGet(keys []string, dsts [][]byte) ([]bool, error) {
	ok := make([]bool, len(keys))
	if len(keys) != len(dsts) {
		return ok, fmt.Errorf("%w: %d keys, %d destinations", ErrLength, len(keys), len(dsts))
	}
	if err := s.enter(); err != nil {
		return ok, err
	}
	defer s.leave()
	s.stats.gets.Add(int64(len(keys)))
	for i, k := range keys {
		err := s.readOld(k, [][]byte{dsts[i]}, int64(len(dsts[i])))
		s.count(err, int64(len(dsts[i])))
		if isFDLimit(err) {
			return ok, err // out of descriptors: never a silent miss
		}
		ok[i] = err == nil
	}
	return ok, nil
}

// oldSize returns the size of key's old-format file, and whether a regular
// file holds that name.
func (s *Store) oldSize(key string) (int64, bool) {
	var st unix.Stat_t
	if unix.Fstatat(unix.AT_FDCWD, s.dir+"/"+s.oldName(key), &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, false
	}
	return st.Size, true
}

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

// Clear removes this store's files from the directory: its batch files, its
// old-format files, its temp files and SGLang's temp files of its names
// (<key><suffix>.bin.tmp.<pid>.<tid>.<uuid>). After it returns, no key this
// store wrote exists or is served, through either interface. Every
// old-format file named <key><suffix>.bin goes, whatever the key: SGLang's
// naming cannot tell key "k_x" of model "m" from key "k" of model "x_m", so
// a model whose name ends with this one's loses such files (a miss for it,
// never a stale page for this store). Other models' and
// ranks' files stay otherwise. Anything else under a store name (a FIFO,
// socket, device, symlink or empty directory) is removed without being
// opened. A file that cannot be removed does not stop the others; the
// failures are joined in the error. A write in progress when Clear runs
// may lose its temp file and fail, or land after Clear returns: a batch
// file still being written with no name (a store without a bound) is not
// there for Clear to find, and is linked in once complete. Only what was
// written before Clear began is sure to be gone. Like a write, Clear
// follows a Dir removed or replaced under the store to the directory now
// at its path.
func (s *Store) Clear() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	// Clear the directory now at the path Dir, as writes do: one removed
	// under the store can no longer be listed.
	s.followDir()
	s.scan.mu.Lock()
	defer s.scan.mu.Unlock()
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	defer s.scan.reset(s.idx)
	defer s.lru.forgetAll(true)
	defer s.lru.forgetAll(false)
	return errors.Join(
		s.removeMatching(s.topfd(), s.dir, func(n string) bool {
			return s.isOldName(n) || s.isTmpName(n) || s.isSGLangTmpName(n)
		}),
		s.removeMatching(s.v1fd(), s.v1Dir, func(n string) bool { return s.isBatchName(n) || s.isTmpName(n) }),
		s.clearLegacy(),
		s.clearComponents(),
	)
}

// removeMatching removes the files in dir whose names match, without
// opening them; an empty directory under such a name goes too.
func (s *Store) removeMatching(dirfd int, dir string, match func(string) bool) error {
	names, err := readDirNamesAt(dirfd)
	if err != nil {
		return fmt.Errorf("hicachefile: list %s: %w", dir, err)
	}
	var errs []error
	for _, n := range names {
		if !match(n) {
			continue
		}
		err := s.sys.Unlinkat(dirfd, n, 0)
		if err == unix.EISDIR {
			err = s.sys.Unlinkat(dirfd, n, unix.AT_REMOVEDIR)
		}
		if err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("hicachefile: remove %s: %w", filepath.Join(dir, n), err))
		}
	}
	return errors.Join(errs...)
}

// trackOldFiles puts this store's old-format files in Dir into the eviction
// order, as used at their modification times. A component pool's store
// tracks none: its old-format files, SGLang's {key}.{pool}S.bin, are also
// old-format names of the KV pool's store, which tracks and evicts them,
// so that no file counts twice.
func (s *Store) trackOldFiles() error {
	if s.cfg.component != "" {
		return nil
	}
	names, err := readDirNamesAt(s.topfd())
	if err != nil {
		return fmt.Errorf("hicachefile: list %s: %w", s.dir, err)
	}
	type file struct {
		name        string
		size, mtime int64
	}
	var files []file
	for _, n := range names {
		var st unix.Stat_t
		if s.isOldName(n) && unix.Fstatat(s.topfd(), n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			files = append(files, file{n, st.Size, st.Mtim.Nano()})
		}
	}
	for _, f := range files {
		s.lru.track(fileID{old: true, name: f.name}, f.size, f.mtime)
	}
	return nil
}
