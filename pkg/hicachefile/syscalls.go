package hicachefile

import "golang.org/x/sys/unix"

// Syscalls is the seam between a Store and the kernel for every system
// call that opens, reads, writes, renames or removes a file: set a field to
// inject faults in a test (each failing call returning an injected error),
// or to observe I/O. A nil field means the real call from
// golang.org/x/sys/unix. Like those calls, Preadv and Pwritev may move fewer
// bytes than asked; the Store loops.
type Syscalls struct {
	// Openat opens or creates a page, batch, temp or index file relative
	// to the store's directory (unix.Openat).
	Openat func(dirfd int, path string, flags int, mode uint32) (fd int, err error)
	// Preadv reads a file into the caller's buffers at an offset, one
	// system call (unix.Preadv).
	Preadv func(fd int, iovs [][]byte, off int64) (n int, err error)
	// Pwritev writes the caller's buffers to a file at an offset, one
	// system call (unix.Pwritev).
	Pwritev func(fd int, iovs [][]byte, off int64) (n int, err error)
	// Fdatasync flushes a written file's data when Config.Sync asks for
	// durability (unix.Fdatasync).
	Fdatasync func(fd int) error
	// Fsync flushes the directory after a rename when Config.Sync asks
	// for durability (unix.Fsync).
	Fsync func(fd int) error
	// Close closes a descriptor the store opened (unix.Close).
	Close func(fd int) error
	// Renameat moves a finished temp file to its final name, so that
	// readers never see a half-written file (unix.Renameat).
	Renameat func(olddirfd int, oldpath string, newdirfd int, newpath string) error
	// Unlinkat removes a temp file after a failure, or a file on Clear and
	// eviction (unix.Unlinkat).
	Unlinkat func(dirfd int, path string, flags int) error
}

// withDefaults returns c with every nil field set to the real call.
func (c Syscalls) withDefaults() Syscalls {
	if c.Openat == nil {
		c.Openat = unix.Openat
	}
	if c.Preadv == nil {
		c.Preadv = unix.Preadv
	}
	if c.Pwritev == nil {
		c.Pwritev = unix.Pwritev
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
	if c.Unlinkat == nil {
		c.Unlinkat = unix.Unlinkat
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
