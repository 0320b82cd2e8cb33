//go:build linux

package hicachefile

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// watchMask selects the inotify events that change what the V1 directory
// holds: a file renamed in, a file removed or renamed out, and the directory
// itself going away. Stores write batch files under temp names and rename
// them in, so a close after writing (IN_CLOSE_WRITE) is not watched: it
// would queue an event for every temp file. A batch file rewritten in place
// by something else is caught when read: its pages then fail their key or
// CRC checks.
const watchMask = unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_MOVED_FROM |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// watcher follows the V1 directory through inotify, so that the index sees
// other processes' batch files arrive and go without listing the directory.
type watcher struct {
	fd  int
	wd  int // the watch on the V1 directory
	buf []byte
}

// newWatcher starts watching dir. It fails where inotify is unavailable or
// its per-user limits are reached; the store then polls instead.
func newWatcher(dir string) (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wd, err := unix.InotifyAddWatch(fd, dir, watchMask)
	if err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	return &watcher{fd: fd, wd: wd, buf: make([]byte, 64<<10)}, nil
}

// rewatch moves the watch to the directory now at dir.
func (w *watcher) rewatch(dir string) error {
	_, _ = unix.InotifyRmWatch(w.fd, uint32(w.wd)) // the old directory may be gone
	wd, err := unix.InotifyAddWatch(w.fd, dir, watchMask)
	if err != nil {
		return err
	}
	w.wd = wd
	return nil
}

// event is what drain reports of one inotify event.
type event int

const (
	evAppeared event = iota // renamed into the directory
	evGone                  // removed or renamed out
)

// drain reads every pending event and passes each named one to fn. It
// reports overflow when the kernel dropped events, so that only a full
// listing can tell what changed, and lost when the watch ended (the
// directory was moved, or removed and no longer held open, or reading
// failed). A directory removed while the store holds it open raises no
// event: Store.checkDir notices that on a miss.
func (w *watcher) drain(fn func(name string, ev event)) (overflow, lost bool) {
	for {
		n, err := unix.Read(w.fd, w.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return overflow, lost
		case err != nil || n <= 0:
			return overflow, true
		}
		for b := w.buf[:n]; len(b) >= unix.SizeofInotifyEvent; {
			mask := binary.NativeEndian.Uint32(b[4:])
			size := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(b[12:]))
			if size > len(b) {
				return overflow, true // the kernel never splits an event
			}
			name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:size], "\x00"))
			b = b[size:]
			switch {
			case mask&unix.IN_Q_OVERFLOW != 0:
				overflow = true
			case mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED|unix.IN_UNMOUNT) != 0:
				lost = true
			case mask&unix.IN_MOVED_TO != 0:
				fn(name, evAppeared)
			case mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
				fn(name, evGone)
			}
		}
	}
}

// close ends the watch.
func (w *watcher) close() error { return unix.Close(w.fd) }

// Magic numbers (statfs f_type) of file systems that other hosts may write
// to: their changes raise no inotify event here.
var networkFS = map[int64]bool{
	0x6969:     true, // NFS
	0xff534d42: true, // CIFS
	0xfe534d42: true, // SMB2
	0x517b:     true, // SMB
	0x65735546: true, // FUSE
	0x00c36400: true, // Ceph
	0x0bd00bd0: true, // Lustre
	0x47504653: true, // GPFS
	0x5346414f: true, // AFS
	0x013111a8: true, // IBRIX
	0x19830326: true, // FhGFS / BeeGFS
}

// isNetworkFS reports whether the directory open at fd lies on a file system
// that other hosts may change.
func isNetworkFS(fd int) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(fd, &st) == nil && networkFS[int64(st.Type)]
}
