//go:build linux

package hicachefile

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// directFile is a batch file opened a second time with O_DIRECT, and the
// alignment the file system asks of direct reads.
type directFile struct {
	fd       int   // -1 when the file is read through the page cache only
	memAlign int64 // buffer addresses must be multiples of this
	offAlign int64 // file offsets and lengths must be multiples of this
}

// openDirect opens the batch file at path, already open and checked to be the
// regular file buffered, a second time for O_DIRECT reads when
// Config.DirectIO asks for it and the file system allows it, and learns the
// alignment it needs from statx (STATX_DIOALIGN), 4096 where the kernel does
// not say.
func (s *Store) openDirect(path string, buffered *unix.Stat_t) directFile {
	none := directFile{fd: -1}
	if !s.cfg.DirectIO {
		return none
	}
	fd, err := s.sys.Openat(unix.AT_FDCWD, path, openFlags|unix.O_DIRECT, 0)
	if err != nil {
		return none // EINVAL: no O_DIRECT here; other errors show on the buffered open
	}
	d := directFile{fd: fd, memAlign: 4096, offAlign: 4096}
	var st unix.Statx_t
	err = unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN|unix.STATX_INO, &st)
	if err != nil || st.Ino != buffered.Ino || unix.Mkdev(st.Dev_major, st.Dev_minor) != buffered.Dev {
		_ = s.sys.Close(fd)
		return none // not the file the buffered descriptor checked: it was replaced between the opens
	}
	if st.Mask&unix.STATX_DIOALIGN != 0 {
		if st.Dio_mem_align == 0 || st.Dio_offset_align == 0 {
			_ = s.sys.Close(fd)
			return none // the file system supports no direct I/O for this file
		}
		d.memAlign, d.offAlign = int64(st.Dio_mem_align), int64(st.Dio_offset_align)
	}
	return d
}

// fits reports whether the n pages page(j) laid back to back from off can be read with
// O_DIRECT: every buffer's address, every buffer's length and the offset
// aligned as the file system asks. Windows of checksummed then stay aligned,
// since ioWindow is a multiple of any offset alignment up to 1 MiB.
func (d directFile) fits(n int, page func(j int) [][]byte, off int64) bool {
	if d.fd < 0 || off%d.offAlign != 0 || ioWindow%d.offAlign != 0 {
		return false
	}
	for j := range n {
		for _, b := range page(j) {
			if len(b) == 0 {
				continue
			}
			if int64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))%d.memAlign != 0 || int64(len(b))%d.offAlign != 0 {
				return false
			}
		}
	}
	return true
}
