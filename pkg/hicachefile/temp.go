package hicachefile

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// Temp files and their writers' liveness.
//
// A writer holds an OFD write lock (F_OFD_SETLK, F_WRLCK) on its temp file
// from just after creating it until after its rename, and the kernel drops
// the lock when the writer closes the file or dies. A store that reclaims
// temp files takes an OFD read lock on each of this store's suffix: it gets
// it only when no writer holds the file, and while it holds it no writer
// can lock it, so it removes the file before letting go. Only files at
// least tempGrace old are taken: between a writer's create and its lock
// (two system calls, but a goroutine may wait for a CPU in between) the
// file is unlocked. A writer whose lock is refused all the same starts
// over under another name; one whose temp file vanished finds its rename
// failing with ENOENT and writes the file again, once. So a dead writer's
// temp file goes at the first reclaim after it is tempGrace old, and a
// live writer's never does.
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

// errTempGone marks a rename that failed because the temp file was no
// longer there: removed by a reclaim between its create and its lock.
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
	if age < tempGrace {
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
