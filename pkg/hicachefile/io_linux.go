//go:build linux

package hicachefile

import (
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxIovecs is the kernel's limit on iovecs per preadv/pwritev (IOV_MAX).
const maxIovecs = 1024

// vectored drives one of unix.Preadv or unix.Pwritev to completion: each
// makes exactly one system call, so it is called until every byte moved,
// over short transfers, EINTR and the iovec limit. A transfer of zero bytes
// (a read past the end of the file) is io.ErrUnexpectedEOF.
func vectored(op func(int, [][]byte, int64) (int, error), fd int, bufs [][]byte, off int64) error {
	cloned := false
	for {
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		if len(bufs) == 0 {
			return nil
		}
		n, err := op(fd, bufs[:min(len(bufs), maxIovecs)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		off += int64(n)
		for len(bufs) > 0 && n >= len(bufs[0]) {
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		if n > 0 {
			// A short transfer ended inside a buffer: advance it in a
			// copy, so that the caller's slice stays intact.
			if !cloned {
				bufs, cloned = slices.Clone(bufs), true
			}
			bufs[0] = bufs[0][n:]
		}
	}
}

// iovecs is a reusable array of iovecs for one vectored system call.
type iovecs [maxIovecs]unix.Iovec

var iovecPool = sync.Pool{New: func() any { return new(iovecs) }}

// rawVectored makes one preadv (SYS_PREADV) or pwritev (SYS_PWRITEV) system
// call of up to maxIovecs of bufs at off: unix.Preadv and unix.Pwritev
// without their allocation of the iovec array per call.
func rawVectored(trap uintptr, fd int, bufs [][]byte, off int64) (int, error) {
	iov := iovecPool.Get().(*iovecs)
	n := min(len(bufs), maxIovecs)
	for i, b := range bufs[:n] {
		iov[i].Base = unsafe.SliceData(b)
		iov[i].SetLen(len(b))
	}
	lo, hi := offsetWords(off)
	r, _, errno := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(n), lo, hi, 0)
	runtime.KeepAlive(bufs)
	clear(iov[:n])
	iovecPool.Put(iov)
	if errno != 0 {
		return int(r), errno
	}
	return int(r), nil
}

// offsetWords splits a file offset into the low and high words that
// preadv, pwritev and preadv2 take, as unix.Preadv does: a 32-bit kernel
// takes the high word from an argument of its own, a 64-bit one ignores
// it.
func offsetWords(off int64) (lo, hi uintptr) {
	return uintptr(off), uintptr(uint64(off) >> (unix.SizeofLong*8 - 1) >> 1)
}

// preadvRaw is unix.Preadv without an allocation per call.
func preadvRaw(fd int, bufs [][]byte, off int64) (int, error) {
	return rawVectored(unix.SYS_PREADV, fd, bufs, off)
}

// pwritevRaw is unix.Pwritev without an allocation per call.
func pwritevRaw(fd int, bufs [][]byte, off int64) (int, error) {
	return rawVectored(unix.SYS_PWRITEV, fd, bufs, off)
}

// openatRaw is unix.Openat without an allocation per call: a name of up
// to maxStackName bytes is made NUL-terminated in a buffer on the stack.
// Like unix.Openat it adds O_LARGEFILE, without which a 32-bit kernel
// refuses a file of 2 GiB or more (EOVERFLOW); elsewhere it is 0.
// A longer name, or one that holds a NUL (which unix.Openat refuses with
// EINVAL), goes through unix.Openat.
func openatRaw(dirfd int, path string, flags int, mode uint32) (int, error) {
	var buf [maxStackName + 1]byte
	if len(path) > maxStackName || strings.IndexByte(path, 0) >= 0 {
		return unix.Openat(dirfd, path, flags, mode)
	}
	copy(buf[:], path)
	for {
		fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&buf[0])), uintptr(flags|unix.O_LARGEFILE), uintptr(mode), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(fd), nil
	}
}

// maxStackName is the longest name openatRaw passes from the stack: a
// batch file's path (reads open it by path, Dir and all) is most often
// under it.
const maxStackName = 511
