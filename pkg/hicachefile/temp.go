package hicachefile

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Temp files and their writers' liveness.
//
// A write fills an anonymous file, made with O_TMPFILE in the directory,
// and links it (linkat through /proc/self/fd) straight to its final name
// once it is whole: a batch file's name is new, so the link cannot fail
// for an existing file. An old-format file's name may exist (a file of
// the wrong size that Set replaces, another writer's same key): then the
// file is locked, linked under a temp name marked as locked from birth
// (".l" and a token), and renamed over the final name. So a temp file
// never appears unlocked, and a writer that dies leaves nothing behind but
// at most such a locked temp name, which the next reclaim removes as soon
// as its lock can be taken.
//
// Where O_TMPFILE is refused (EOPNOTSUPP, EISDIR, EINVAL: some FUSE and
// NFS file systems, old kernels), or /proc is not mounted, the store falls
// back to creating the temp file by name (O_EXCL) and then locking it. A
// writer holds an OFD write lock (F_OFD_SETLK, F_WRLCK) on its temp file
// from just after creating it until after its rename, and the kernel drops
// the lock when the writer closes the file or dies. A store that reclaims
// temp files takes an OFD read lock on each of this store's suffix: it gets
// it only when no writer holds the file, and while it holds it no writer
// can lock it, so it removes the file before letting go. Fallback temp
// files (named "." and a token) are taken only when at least tempGrace
// old: between their writer's create and its lock (two system calls, but a
// goroutine may wait for a CPU in between) they are unlocked. A writer
// whose lock is refused all the same starts over under another name; one
// whose temp file vanished finds its rename failing with ENOENT and writes
// the file again, once. So a dead fallback writer's temp file goes at the
// first reclaim after it is tempGrace old, and a live writer's never does.
//
// Where the file system refuses locks, a temp file is taken as dead once
// its mtime is staleTempAge old. SGLang's own temp files
// (<key><suffix>.bin.tmp.<pid>.<tid>.<uuid>) carry no lock; they go by that
// age too.
const (
	tempGrace    = time.Second
	staleTempAge = 10 * time.Minute
	// reclaimEvery bounds how often eviction lists the directories for
	// dead writers' temp files.
	reclaimEvery = time.Second
)

// errTempGone marks a commit that failed because the temp file was no
// longer there (removed by a reclaim between its create and its lock), or
// because its anonymous file could not be linked after all: the caller
// writes the file again, once, by then under a name if need be.
var errTempGone = errors.New("temp file removed before its rename")

// lockTemp takes the write lock that marks fd's temp file as being
// written. taken says a reclaim holds the file and is removing it. A file
// system that refuses locks (ENOLCK, EOPNOTSUPP, EINVAL, ENOSYS) leaves the
// file unlocked: other stores then judge it by age. Another error is
// returned.
func (s *Store) lockTemp(fd int) (taken bool, err error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	switch err := s.sys.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); err {
	case nil, unix.ENOLCK, unix.EOPNOTSUPP, unix.EINVAL, unix.ENOSYS:
		return false, nil
	case unix.EAGAIN, unix.EACCES:
		return true, nil
	default:
		return false, err
	}
}

// reclaimOne removes the temp file name in dirfd if its writer is dead, and
// reports whether it did; otherwise it returns the bytes the file takes (0
// when it is not there, or not a regular file: Clear's business). sglang
// marks SGLang's temp files, which carry no lock.
func (s *Store) reclaimOne(dirfd int, name string, sglang bool, now time.Time) (bool, int64) {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, 0
	}
	age := now.Sub(time.Unix(st.Mtim.Unix()))
	old := age >= staleTempAge
	remove := func() (bool, int64) {
		switch err := s.sys.Unlinkat(dirfd, name, 0); err {
		case nil:
			return true, 0
		case unix.ENOENT:
			return false, 0
		default:
			return false, st.Size // still there, still taking space
		}
	}
	if sglang {
		if old {
			return remove()
		}
		return false, st.Size
	}
	if age < tempGrace && !bornLocked(name) {
		return false, st.Size // maybe between its writer's create and lock
	}
	fd, err := s.sys.Openat(dirfd, name, openFlags, 0)
	if err != nil {
		return false, 0
	}
	defer s.sys.Close(fd)
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: 0, Len: 0}
	switch err := s.sys.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); {
	case err == nil:
		return remove() // no writer holds it, and none can take it now
	case err == unix.EAGAIN || err == unix.EACCES:
		return false, st.Size // a live writer's
	case old:
		return remove() // locks refused here: only age tells
	}
	return false, st.Size
}

// reclaimTemps removes the temp files of dead writers of this store's
// suffix in Dir and its V1 directory, counting them in Stats.ReclaimedTemps,
// and records the bytes of the live ones other writers hold, which count
// toward MaxBytes. It lists both directories.
func (s *Store) reclaimTemps() error { return s.reclaimTempsIn(nil) }

// reclaimTempsIn is reclaimTemps with the V1 directory's names listed
// already (New lists it once for this and its index), or nil to list it.
func (s *Store) reclaimTempsIn(v1Names []string) error {
	now := time.Now()
	var errs []error
	var live int64
	for _, d := range []struct {
		fd int
		v1 bool
	}{{fd: s.topfd()}, {fd: s.v1fd(), v1: true}} {
		names, err := v1Names, error(nil)
		if !d.v1 || names == nil {
			names, err = readDirNamesAt(d.fd)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range names {
			sglang := !d.v1 && s.isSGLangTmpName(n)
			if !sglang && !s.isTmpName(n) || s.lru.ownTemp(n) {
				continue
			}
			removed, size := s.reclaimOne(d.fd, n, sglang, now)
			if removed {
				s.stats.reclaimedTemps.Add(1)
			}
			live += size
		}
	}
	s.lru.setForeignTemps(live)
	return errors.Join(errs...)
}

// tmpfile says whether a store makes its temp files with O_TMPFILE.
type tmpfile int32

const (
	tmpfileUnknown tmpfile = iota // not tried yet
	tmpfileOK                     // made and linked
	tmpfileNo                     // refused: temp files are made by name
)

// openTemp opens a new temp file of size bytes in dirfd (at path dir): an
// anonymous one where the file system allows (see the top of this file),
// else one created by name and locked.
func (s *Store) openTemp(dirfd int, dir string, size int64) (tempFile, error) {
	t := tempFile{dirfd: dirfd, dir: dir, size: size, name: s.tmpName()}
	if tmpfile(s.tmpfile.Load()) != tmpfileNo {
		fd, err := s.sys.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		switch err {
		case nil:
			s.tmpfile.CompareAndSwap(int32(tmpfileUnknown), int32(tmpfileOK))
			t.fd, t.anon = fd, true
			return t, nil
		case unix.EOPNOTSUPP, unix.EISDIR, unix.EINVAL:
			s.tmpfile.Store(int32(tmpfileNo))
		default:
			return t, fmt.Errorf("hicachefile: create a temp file in %s: %w", dir, err)
		}
	}
	var err error
	for attempt := 1; ; attempt++ {
		t.fd, err = s.sys.Openat(dirfd, t.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return t, fmt.Errorf("hicachefile: create %s: %w", filepath.Join(dir, t.name), err)
		}
		var taken bool
		taken, err = s.lockTemp(t.fd)
		if !taken || attempt == 3 {
			break
		}
		// Another store's reclaim holds it, taking it for a dead writer's,
		// and removes it: start over under another name.
		_ = s.sys.Close(t.fd)
		t.name = s.tmpName()
	}
	if err != nil {
		_ = s.sys.Unlinkat(dirfd, t.name, 0)
		_ = s.sys.Close(t.fd)
		return t, fmt.Errorf("hicachefile: lock %s: %w", filepath.Join(dir, t.name), err)
	}
	return t, nil
}

// place puts the temp file t at name: a named one is renamed there; an
// anonymous one is linked there, or, when name exists, locked, linked
// under a temp name marked as locked from birth, and renamed over name.
// On failure no name of t is left.
func (s *Store) place(t tempFile, name string) error {
	path := filepath.Join(t.dir, name)
	if !t.anon {
		switch err := s.sys.Renameat(t.dirfd, t.name, t.dirfd, name); err {
		case nil:
			return nil
		case unix.ENOENT:
			return fmt.Errorf("hicachefile: rename %s to %s: %w: %w", t.name, path, errTempGone, err)
		default:
			return fmt.Errorf("hicachefile: rename %s to %s: %w", t.name, path, err)
		}
	}
	err := s.link(t.fd, t.dirfd, name)
	if err != unix.EEXIST {
		return s.linkErr(err, path)
	}
	if _, err := s.lockTemp(t.fd); err != nil {
		return fmt.Errorf("hicachefile: lock a temp file for %s: %w", path, err)
	}
	tmp := s.lockedTmpName()
	if err := s.link(t.fd, t.dirfd, tmp); err != nil {
		return s.linkErr(err, filepath.Join(t.dir, tmp))
	}
	if err := s.sys.Renameat(t.dirfd, tmp, t.dirfd, name); err != nil {
		_ = s.sys.Unlinkat(t.dirfd, tmp, 0)
		return fmt.Errorf("hicachefile: rename %s to %s: %w", tmp, path, err)
	}
	return nil
}

// link gives the anonymous file open at fd the name name in dirfd. It goes
// through /proc/self/fd, which needs no privilege, where linkat with
// AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH.
func (s *Store) link(fd, dirfd int, name string) error {
	return s.sys.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dirfd, name, unix.AT_SYMLINK_FOLLOW)
}

// linkErr turns a failed link of an anonymous file at path into the
// commit's error. A link refused for want of /proc, or by a file system
// that makes O_TMPFILE files but cannot link them, turns O_TMPFILE off for
// the store; that, and ENOENT (the directory removed, as a rename would
// find), ask the caller to write the file again, once: errTempGone.
func (s *Store) linkErr(err error, path string) error {
	switch err {
	case nil:
		return nil
	case unix.ENOENT, unix.EOPNOTSUPP, unix.EPERM, unix.EINVAL, unix.ENOSYS:
		if err != unix.ENOENT || !s.procFD() {
			s.tmpfile.Store(int32(tmpfileNo))
		}
		return fmt.Errorf("hicachefile: link %s: %w: %w", path, errTempGone, err)
	}
	return fmt.Errorf("hicachefile: link %s: %w", path, err)
}

// procFD reports whether /proc/self/fd is there to link anonymous files
// through.
func (*Store) procFD() bool { return unix.Access("/proc/self/fd", unix.X_OK) == nil }
