package hicachefile

import "golang.org/x/sys/unix"

// Syscalls is the seam between a Store and the kernel for every system
// call that opens, reads, writes, renames or removes a file: set a field to
// inject faults in a test (each failing call returning an injected error),
// or to observe I/O. A nil field means the real call from
// golang.org/x/sys/unix. Like those calls, Preadv and Pwritev may move fewer
// bytes than asked; the Store loops.
type Syscalls struct {
	Openat    func(dirfd int, path string, flags int, mode uint32) (fd int, err error)
	Preadv    func(fd int, iovs [][]byte, off int64) (n int, err error)
	Pwritev   func(fd int, iovs [][]byte, off int64) (n int, err error)
	Fdatasync func(fd int) error
	Fsync     func(fd int) error
	Close     func(fd int) error
	Renameat  func(olddirfd int, oldpath string, newdirfd int, newpath string) error
	Unlinkat  func(dirfd int, path string, flags int) error
}

// withDefaults returns c with every nil field set to the real call.
func (c Syscalls) withDefaults() Syscalls {
	if c.Openat == nil {
		c.Openat = unix.Openat
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
