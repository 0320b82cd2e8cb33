package perf

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directSupported reports whether -perf-direct can work here.
const directSupported = true

// directAlign is what the floor asks of an O_DIRECT read: buffer addresses,
// lengths and file offsets all multiples of it. 4096 meets the logical block
// size of every common disk and file system.
const directAlign = 4096

// readPageDirect preads path back to back into bufs with O_DIRECT. When that
// cannot be done (bufs not aligned, or the file system answers EINVAL) it
// returns direct false and why, and the caller reads the page again through
// the page cache; any other failure is an error.
func readPageDirect(path string, bufs [][]byte) (direct bool, why string, err error) {
	for _, b := range bufs {
		if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%directAlign != 0 || len(b)%directAlign != 0 {
			return false, fmt.Sprintf("the page's pool buffers (%s each) are not %d-byte aligned", formatBytes(int64(len(b))), directAlign), nil
		}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		return false, "the file system refuses O_DIRECT (open: EINVAL)", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("perf: floor: open %s with O_DIRECT: %w", path, err)
	}
	defer unix.Close(fd)
	var off int64
	for _, b := range bufs {
		for len(b) > 0 {
			n, err := unix.Pread(fd, b, off)
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.EINVAL):
				return false, fmt.Sprintf("the file system refuses this O_DIRECT read (pread at offset %d: EINVAL)", off), nil
			case err != nil:
				return false, "", fmt.Errorf("perf: floor: pread %s with O_DIRECT: %w", path, err)
			case n == 0:
				return false, "", fmt.Errorf("perf: floor: pread %s with O_DIRECT at offset %d: %w", path, off, io.ErrUnexpectedEOF)
			}
			b = b[n:]
			off += int64(n)
		}
	}
	return true, "", nil
}

// syncFS writes back the dirty pages of dir's file system, untimed: before
// each timed write, so that it does not pay for the writeback of the sample
// before it, and before a direct read, since the kernel writes back a file's
// dirty range before reading it with O_DIRECT.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("perf: syncfs: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("perf: syncfs %s: %w", dir, err)
	}
	return nil
}
