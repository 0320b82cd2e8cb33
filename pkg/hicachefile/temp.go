package hicachefile

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// Temp files and their writers' liveness.
//
// A writer holds an OFD lock (F_OFD_SETLK, F_WRLCK) on its temp file from
// just after creating it until after its rename, and the kernel drops the
// lock when the writer closes the file or dies. A temp file of this store's
// suffix that no lock covers and that is at least tempGrace old (the time
// between a writer's create and its lock) belongs to a dead writer, and is
// removed. Where the file system refuses locks, a temp file is taken as
// dead once its mtime is staleTempAge old. SGLang's own temp files
// (<key><suffix>.bin.tmp.<pid>.<tid>.<uuid>) carry no lock; they go by
// that age too.
const (
	tempGrace    = time.Second
	staleTempAge = 10 * time.Minute
	// reclaimEvery bounds how often eviction lists the directories for
	// dead writers' temp files.
	reclaimEvery = time.Second
)

// lockTemp takes the write lock that marks fd's temp file as being
// written. A file system that refuses locks (ENOLCK, EOPNOTSUPP, EINVAL,
// ENOSYS) leaves the file unlocked: other stores then judge it by age.
// Another error is returned.
func (s *Store) lockTemp(fd int) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	switch err := s.sys.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); err {
	case nil, unix.ENOLCK, unix.EOPNOTSUPP, unix.EINVAL, unix.ENOSYS:
		return nil
	default:
		return err
	}
}

// tempState is what reclaim learned of one temp file.
type tempState int

const (
	tempLive tempState = iota // a writer holds it, or it is too young to tell
	tempDead                  // its writer is gone: remove it
	tempGone                  // not there, or not a regular file (Clear's business)
)

// judgeTemp tells whether the temp file name in dirfd, written by this
// store's kind (locked) or by SGLang (sglang: never locked), is live, and
// returns its size.
func (s *Store) judgeTemp(dirfd int, name string, sglang bool, now time.Time) (tempState, int64) {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return tempGone, 0
	}
	age := now.Sub(time.Unix(st.Mtim.Unix()))
	if sglang {
		if age >= staleTempAge {
			return tempDead, st.Size
		}
		return tempLive, st.Size
	}
	fd, err := s.sys.Openat(dirfd, name, openFlags, 0)
	if err != nil {
		return tempGone, 0
	}
	defer s.sys.Close(fd)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	switch err := s.sys.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &lk); {
	case err != nil:
		// Locks refused here: only age tells.
		if age >= staleTempAge {
			return tempDead, st.Size
		}
	case lk.Type == unix.F_UNLCK && age >= tempGrace:
		return tempDead, st.Size
	}
	return tempLive, st.Size
}

// reclaimTemps removes the temp files of dead writers of this store's
// suffix in Dir and its V1 directory, counting them in Stats.ReclaimedTemps,
// and records the bytes of the live ones other writers hold, which count
// toward MaxBytes. It lists both directories.
func (s *Store) reclaimTemps() error {
	now := time.Now()
	var errs []error
	var live int64
	for _, d := range []struct {
		fd int
		v1 bool
	}{{fd: s.topfd()}, {fd: s.v1fd(), v1: true}} {
		names, err := readDirNamesAt(d.fd)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, n := range names {
			sglang := !d.v1 && s.isSGLangTmpName(n)
			if !sglang && !s.isTmpName(n) || s.lru.ownTemp(n) {
				continue
			}
			state, size := s.judgeTemp(d.fd, n, sglang, now)
			switch state {
			case tempLive:
				live += size
			case tempDead:
				if err := s.sys.Unlinkat(d.fd, n, 0); err == nil {
					s.stats.reclaimedTemps.Add(1)
				} else if err != unix.ENOENT {
					live += size // still there, still taking space
				}
			}
		}
	}
	s.lru.setForeignTemps(live)
	return errors.Join(errs...)
}
