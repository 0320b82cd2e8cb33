//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// openFlags open every file the store reads so that the open cannot block
// or follow a link: a FIFO planted under a store name in a shared /tmp
// directory opens at once with O_NONBLOCK instead of waiting for a writer,
// and a symlink fails with ELOOP.
const openFlags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC

// maxFDWait bounds the last of the waits of openRegular when the process
// or the system is out of descriptors: it waits 1, 2, 4, ... ms up to this,
// about 0.13 s in all, before it returns EMFILE or ENFILE.
const maxFDWait = 64 * time.Millisecond

// isFDLimit reports whether err says the process (EMFILE) or the system
// (ENFILE) has no descriptor left.
func isFDLimit(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)
}

// errNotRegular marks a store name held by something other than a regular
// file: a FIFO, socket, device, directory or symlink. It always comes
// wrapped with ErrNotFound: such a name is a miss.
var errNotRegular = errors.New("not a regular file")

// openWait opens name in dirfd with openFlags; out of descriptors, it
// waits for other calls or other code to close some (1, 2, 4, ... ms up to
// maxFDWait) before it gives up.
func (s *Store) openWait(dirfd int, name string) (int, error) {
	fd, err := s.sys.Openat(dirfd, name, openFlags, 0)
	for wait := time.Millisecond; isFDLimit(err) && wait <= maxFDWait; wait *= 2 {
		time.Sleep(wait)
		fd, err = s.sys.Openat(dirfd, name, openFlags, 0)
	}
	return fd, err
}

// openRegular opens name in the directory dirfd (at path dir) for reading
// and checks that it is a regular file before anything reads it. With
// dirfd AT_FDCWD it opens dir/name by path, following the path as it is
// now rather than the directory the store holds open. A name
// that holds anything else is counted in Stats.SpecialFiles and returned as
// an error wrapping ErrNotFound and errNotRegular. A missing file is the
// bare unix.ENOENT.
func (s *Store) openRegular(dirfd int, dir, name string) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	path := name
	if dirfd == unix.AT_FDCWD {
		path = dir + "/" + name
	}
	fd, err := s.openWait(dirfd, path)
	switch {
	case err == unix.ENOENT:
		return -1, st, err
	case err == unix.ELOOP || err == unix.ENXIO || err == unix.EISDIR:
		// A symlink (O_NOFOLLOW), a socket, or a directory.
		s.stats.specialFiles.Add(1)
		return -1, st, fmt.Errorf("%w: %s: %w (%v)", ErrNotFound, filepath.Join(dir, name), errNotRegular, err)
	case err != nil:
		return -1, st, fmt.Errorf("hicachefile: open %s: %w", filepath.Join(dir, name), err)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		_ = s.sys.Close(fd)
		return -1, st, fmt.Errorf("hicachefile: fstat %s: %w", filepath.Join(dir, name), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = s.sys.Close(fd)
		s.stats.specialFiles.Add(1)
		return -1, st, fmt.Errorf("%w: %s: %w (mode %#o)", ErrNotFound, filepath.Join(dir, name), errNotRegular, st.Mode&unix.S_IFMT)
	}
	return fd, st, nil
}
