//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/lru"
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
	id := lru.ID{Old: true, Name: s.oldName(key)}
	s.lru.Track(id, int64(len(value)), time.Now().UnixNano())
	s.evict(map[lru.ID]bool{id: true})
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
	s.lru.Touch(lru.ID{Old: true, Name: name})
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
		s.lru.Track(lru.ID{Old: true, Name: f.name}, f.size, f.mtime)
	}
	return nil
}
