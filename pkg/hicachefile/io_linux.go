//go:build linux

package hicachefile

import (
	"io"
	"slices"

	"golang.org/x/sys/unix"
)

// maxIovecs is the kernel's limit on iovecs per preadv/pwritev (IOV_MAX).
const maxIovecs = 1024

// pwritevFull writes every byte of bufs to fd starting at off. It loops over
// short writes and EINTR, and splits at the iovec limit.
func pwritevFull(fd int, bufs [][]byte, off int64) error {
	return vectored(unix.Pwritev, fd, bufs, off)
}

// preadvFull fills every byte of bufs from fd starting at off. A read that
// ends before the buffers are full is io.ErrUnexpectedEOF.
func preadvFull(fd int, bufs [][]byte, off int64) error {
	return vectored(unix.Preadv, fd, bufs, off)
}

// vectored drives one of unix.Preadv or unix.Pwritev to completion: each
// makes exactly one system call, so it is called until every byte moved.
func vectored(op func(int, [][]byte, int64) (int, error), fd int, bufs [][]byte, off int64) error {
	bufs = slices.Clone(bufs) // advanced below; the caller's slice stays intact
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
		for n > 0 {
			k := min(n, len(bufs[0]))
			bufs[0] = bufs[0][k:]
			n -= k
			if len(bufs[0]) == 0 {
				bufs = bufs[1:]
			}
		}
	}
}
