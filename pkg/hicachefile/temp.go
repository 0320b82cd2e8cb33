//go:build linux

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
// A write fills a temp file and renames it over its final name. The temp
// file is made with O_TMPFILE in the directory, with no name; its writer
// takes an OFD write lock (F_OFD_SETLK, F_WRLCK) on it, and only then links
// it (linkat through /proc/self/fd) under a temp name marked as locked from
// birth (".l" and a token), before writing it. So the name never exists
// unlocked, other stores see the bytes being written (they count toward
// their MaxBytes), and the kernel drops the lock when the writer closes the
// file or dies. A store that reclaims temp files takes an OFD read lock on
// each of this store's suffix: it gets it only when no writer holds the
// file, and while it holds it no writer can lock it, so it removes the
// file before letting go. A temp file marked as locked from birth is dead
// as soon as its lock can be taken, however young.
//
// Where O_TMPFILE or the link is refused (EOPNOTSUPP, EISDIR, EINVAL: some
// FUSE and NFS file systems, old kernels; EPERM; or no /proc), the store
// creates its temp files by name (O_EXCL, "." and a token), then locks
// them. Between that create and its lock (two system calls, but a
// goroutine may wait for a CPU in between) the file is unlocked, so such a
// file is taken only when at least tempGrace old. A writer whose lock is
// refused all the same starts over under another name; one whose temp file
// vanished finds its rename failing with ENOENT and writes the file again,
// once. So a dead writer's temp file goes at the first reclaim after it is
// tempGrace old there, and a live writer's never does.
//
// Where the file system refuses locks, a temp file is taken as dead once
// it is staleTempAge old. SGLang's own temp files
// (<key><suffix>.bin.tmp.<pid>.<tid>.<uuid>) carry no lock; they go by that
// age too. A file's age is that of its mtime, or of its ctime when the
// mtime is dated ahead (tempAge), so no mtime keeps a dead file.
const (
	tempGrace    = time.Second
	staleTempAge = 10 * time.Minute
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
	age := tempAge(&st, now)
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

// tempAge returns how long ago the temp file whose stat is st was last
// written: by its mtime, or, when that is dated ahead of now (set by
// utimes, which anyone who can write the file may call), by its ctime,
// which the kernel sets to now at every change and no one can set. A
// file dated ahead is thus judged like any other, never kept for its
// mtime. A ctime ahead too (the clock stepped back) counts as now.
func tempAge(st *unix.Stat_t, now time.Time) time.Duration {
	if age := now.Sub(time.Unix(st.Mtim.Unix())); age >= 0 {
		return age
	}
	return max(now.Sub(time.Unix(st.Ctim.Unix())), 0)
}

// reclaimTemps removes the temp files of dead writers of this store's
// suffix in Dir and its V1 directory, counting them in Stats.ReclaimedTemps,
// and records the bytes of the live ones other writers hold, which count
// toward MaxBytes. It lists both directories, and brings the count of the
// store's files up to date from those listings (recount).
func (s *Store) reclaimTemps() error { return s.reclaimTempsIn(nil) }

// reclaimTempsIn is reclaimTemps with the V1 directory's names listed
// already (New lists it once for this and its index), or nil to list it.
func (s *Store) reclaimTempsIn(v1Names []string) error {
	now := time.Now()
	var errs []error
	var live int64
	var listed [2][]string // Dir's names and the V1 directory's, when both were listed here
	for i, d := range []struct {
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
		if v1Names == nil {
			listed[i] = names
		}
		for _, n := range names {
			sglang := !d.v1 && s.isSGLangTmpName(n)
			// A legacy temp file (legacy.go) goes once dead, but may be
			// another identity's: its bytes are not counted.
			legacy := !d.v1 && !sglang && s.isLegacyTmpName(n)
			if !sglang && !legacy && !s.isTmpName(n) || s.lru.OwnTemp(n) {
				continue
			}
			removed, size := s.reclaimOne(d.fd, n, sglang, now)
			if removed {
				s.stats.reclaimedTemps.Add(1)
			}
			if !legacy {
				live += size
			}
		}
	}
	s.lru.SetForeignTemps(live)
	if len(errs) == 0 && v1Names == nil {
		s.recount(listed[0], listed[1])
	}
	return errors.Join(errs...)
}

// tmpfile says whether a store makes its temp files with O_TMPFILE.
type tmpfile int32

const (
	tmpfileUnknown tmpfile = iota // not tried yet
	tmpfileOK                     // made and linked
	tmpfileNo                     // refused: temp files are made by name
)

// openTemp opens a new temp file of size bytes in dirfd (at path dir),
// locked: one made with O_TMPFILE, locked, then linked under a name marked
// as locked from birth, where the file system allows (see the top of this
// file); else one created by name, then locked.
func (s *Store) openTemp(dirfd int, dir string, size int64) (tempFile, error) {
	if tmpfile(s.tmpfile.Load()) != tmpfileNo {
		if t, ok, err := s.openBornLocked(dirfd, dir, size); ok || err != nil {
			return t, err
		}
	}
	t := tempFile{dirfd: dirfd, dir: dir, size: size}
	var err error
	for attempt := 1; ; attempt++ {
		t.name = s.tmpName()
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
	}
	if err != nil {
		_ = s.sys.Unlinkat(dirfd, t.name, 0)
		_ = s.sys.Close(t.fd)
		return t, fmt.Errorf("hicachefile: lock %s: %w", filepath.Join(dir, t.name), err)
	}
	return t, nil
}

// openBornLocked makes a temp file with O_TMPFILE in dirfd, locks it, and
// links it under a name marked as locked from birth (through /proc/self/fd,
// which needs no privilege, where linkat with AT_EMPTY_PATH needs
// CAP_DAC_READ_SEARCH). ok is false, with no error, where the file system
// refuses O_TMPFILE or the link, or /proc is not there: O_TMPFILE is then
// off for the store, which makes its temp files by name.
func (s *Store) openBornLocked(dirfd int, dir string, size int64) (t tempFile, ok bool, err error) {
	if t, ok, err = s.openUnnamed(dirfd, dir, size); !ok || err != nil {
		return t, ok, err
	}
	t.name = s.lockedTmpName()
	if _, err := s.lockTemp(t.fd); err != nil { // nobody else can have it
		_ = s.sys.Close(t.fd)
		return t, false, fmt.Errorf("hicachefile: lock a temp file in %s: %w", dir, err)
	}
	err = s.linkFD(t.fd, dirfd, t.name)
	switch {
	case err == nil:
		s.tmpfile.CompareAndSwap(int32(tmpfileUnknown), int32(tmpfileOK))
		return t, true, nil
	case linkRefused(err):
		_ = s.sys.Close(t.fd)
		s.tmpfile.Store(int32(tmpfileNo))
		return t, false, nil
	default:
		_ = s.sys.Close(t.fd)
		return t, false, fmt.Errorf("hicachefile: link %s: %w", filepath.Join(dir, t.name), err)
	}
}

// linkFD gives the file made with O_TMPFILE open at fd the name name in
// dirfd: with AT_EMPTY_PATH, which Linux allows the opener of the file
// since 6.10 (before, only with CAP_DAC_READ_SEARCH), else through
// /proc/self/fd, which needs no privilege. It fails with EEXIST when name
// is taken.
func (s *Store) linkFD(fd, dirfd int, name string) error {
	if s.noEmptyPath.Load() {
		return s.sys.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dirfd, name, unix.AT_SYMLINK_FOLLOW)
	}
	err := s.sys.Linkat(fd, "", dirfd, name, unix.AT_EMPTY_PATH)
	if err != unix.ENOENT && err != unix.EPERM && err != unix.EINVAL {
		return err
	}
	// Refused, or the directory is gone, which the link through /proc
	// tells: only a refusal sends the next links through /proc at once.
	err = s.sys.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dirfd, name, unix.AT_SYMLINK_FOLLOW)
	if err == nil || err == unix.EEXIST {
		s.noEmptyPath.Store(true)
	}
	return err
}

// linkRefused reports whether err, from linkFD, says that files made with
// O_TMPFILE cannot be linked here: the store then makes its temp files by
// name.
func linkRefused(err error) bool {
	return err == unix.EOPNOTSUPP || err == unix.EPERM || err == unix.EINVAL || err == unix.ENOSYS ||
		err == unix.ENOENT && unix.Access("/proc/self/fd", unix.X_OK) != nil
}

// Unnamed writes.
//
// A batch file goes to a new name that no one else uses, so it needs no
// rename over an old file: where the file system allows O_TMPFILE, a
// store without MaxBytes or MinFreeBytes writes it into a file with no
// name at all and links it under its final name once complete (openat,
// pwritev, linkat, close: the floor's count). Until the link no other
// process can see the file, so it needs no lock; if the writer dies first,
// the kernel frees it, and nothing is left to reclaim. A store with a bound
// names its temp files instead (openTemp), so that its neighbours count
// their bytes toward their MaxBytes while they are written.

// openUnnamed opens a new file with no name in dirfd (at path dir), with
// O_TMPFILE. ok is false, with no error, where the file system refuses
// O_TMPFILE: the store then makes its temp files by name.
func (s *Store) openUnnamed(dirfd int, dir string, size int64) (t tempFile, ok bool, err error) {
	t = tempFile{dirfd: dirfd, dir: dir, size: size}
	t.fd, err = s.sys.Openat(dirfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	switch err {
	case nil:
		return t, true, nil
	case unix.EOPNOTSUPP, unix.EISDIR, unix.EINVAL:
		s.tmpfile.Store(int32(tmpfileNo))
		return t, false, nil
	default:
		return t, false, fmt.Errorf("hicachefile: create a temp file in %s: %w", dir, err)
	}
}

// unnamedWrites reports whether the store's batch files are written with
// no name until complete (see openUnnamed).
func (s *Store) unnamedWrites() bool {
	return !s.lru.On() && tmpfile(s.tmpfile.Load()) != tmpfileNo
}

// errNameTaken marks a link that failed because the final name exists: a
// new name is drawn.
var errNameTaken = errors.New("name taken")

// publish links the complete unnamed file t under name, then closes it. On
// failure t is closed, and name removed if it was linked but could not be
// made durable or closed cleanly. A name that exists already is
// errNameTaken, and t then stays open for another name; where the link is
// refused, O_TMPFILE is turned off and the error is errTempGone, so that
// the caller writes the file again by name.
func (s *Store) publish(t tempFile, name string) error {
	err := s.linkFD(t.fd, t.dirfd, name)
	switch {
	case err == unix.EEXIST:
		return fmt.Errorf("hicachefile: link %s: %w", filepath.Join(t.dir, name), errNameTaken)
	case err != nil && linkRefused(err):
		s.tmpfile.Store(int32(tmpfileNo))
		_ = s.sys.Close(t.fd)
		return fmt.Errorf("hicachefile: link %s: %w: %w", filepath.Join(t.dir, name), errTempGone, err)
	case err != nil:
		_ = s.sys.Close(t.fd)
		return fmt.Errorf("hicachefile: link %s: %w", filepath.Join(t.dir, name), err)
	}
	return s.closeCommitted(t, name)
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
		s.lru.StartTemp(t.name, t.size)
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
	s.lru.EndTemp(t.name)
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
	defer s.lru.EndTemp(t.name)
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
