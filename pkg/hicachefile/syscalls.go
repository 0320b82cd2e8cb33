//go:build linux

package hicachefile

import "golang.org/x/sys/unix"

// Syscalls is the seam between a Store and the kernel for every system
// call that opens, reads, writes, links, renames or removes a file: set a field to
// inject faults in a test (each failing call returning an injected error),
// or to observe I/O. A nil field means the real call from
// golang.org/x/sys/unix. Like those calls, Preadv and Pwritev may move fewer
// bytes than asked; the Store loops.
type Syscalls struct {
	// Openat opens path relative to the directory dirfd (openat(2)); with
	// dirfd unix.AT_FDCWD, path is the file's path from Config.Dir (reads
	// open by path, so that they follow Dir). path may live in memory the
	// store reuses: it is valid during the call only, and must be copied to
	// be kept.
	Openat func(dirfd int, path string, flags int, mode uint32) (fd int, err error)
	// Preadv reads into iovs from fd at off (preadv(2)); it may read less.
	Preadv func(fd int, iovs [][]byte, off int64) (n int, err error)
	// Pwritev writes iovs to fd at off (pwritev(2)); it may write less.
	Pwritev func(fd int, iovs [][]byte, off int64) (n int, err error)
	// Fdatasync flushes fd's data to the device (fdatasync(2)), with
	// Config.Sync.
	Fdatasync func(fd int) error
	// Fsync flushes a directory after a rename (fsync(2)), with
	// Config.Sync.
	Fsync func(fd int) error
	// Close closes fd (close(2)).
	Close func(fd int) error
	// Renameat renames a temp file to its final name (renameat(2)).
	Renameat func(olddirfd int, oldpath string, newdirfd int, newpath string) error
	// Linkat gives a temp file made with O_TMPFILE its name (linkat(2),
	// through /proc/self/fd with AT_SYMLINK_FOLLOW).
	Linkat func(olddirfd int, oldpath string, newdirfd int, newpath string, flags int) error
	// Unlinkat removes a file (unlinkat(2)): a failed temp file, an
	// evicted or cleared file, a dead writer's temp file.
	Unlinkat func(dirfd int, path string, flags int) error
	// FcntlFlock takes (F_OFD_SETLK) or tests (F_OFD_GETLK) the OFD lock a
	// writer holds on its temp file while it is alive (fcntl(2)).
	FcntlFlock func(fd uintptr, cmd int, lk *unix.Flock_t) error
	// Fstatfs reports the free space of the file system of the directory
	// fd (fstatfs(2)), for Config.MinFreeBytes.
	Fstatfs func(fd int, buf *unix.Statfs_t) error
}

// withDefaults returns c with every nil field set to the real call.
func (c Syscalls) withDefaults() Syscalls {
	if c.Openat == nil {
		c.Openat = openatRaw
	}
	if c.Preadv == nil {
		c.Preadv = preadvRaw
	}
	if c.Pwritev == nil {
		c.Pwritev = pwritevRaw
	}
	if c.Fdatasync == nil {
		c.Fdatasync = unix.Fdatasync
	}
	if c.Fsync == nil {
		c.Fsync = unix.Fsync
	}
	if c.Close == nil {
		c.Close = unix.Close
	}
	if c.Renameat == nil {
		c.Renameat = unix.Renameat
	}
	if c.Linkat == nil {
		c.Linkat = unix.Linkat
	}
	if c.Unlinkat == nil {
		c.Unlinkat = unix.Unlinkat
	}
	if c.FcntlFlock == nil {
		c.FcntlFlock = unix.FcntlFlock
	}
	if c.Fstatfs == nil {
		c.Fstatfs = unix.Fstatfs
	}
	return c
}

// preadv fills every byte of bufs from fd at off through the seam.
func (c *Syscalls) preadv(fd int, bufs [][]byte, off int64) error {
	return vectored(c.Preadv, fd, bufs, off)
}

// pwritev writes every byte of bufs to fd at off through the seam.
func (c *Syscalls) pwritev(fd int, bufs [][]byte, off int64) error {
	return vectored(c.Pwritev, fd, bufs, off)
}
