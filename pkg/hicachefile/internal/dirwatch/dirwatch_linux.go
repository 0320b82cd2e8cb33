//go:build linux

// Package dirwatch follows a store's V1 directory and the Dir holding it
// through inotify, so that the store sees other processes' batch files
// arrive and go without listing the directory, and sees either directory
// removed, moved or (through a symlinked Dir) retargeted without a stat per
// call. It knows paths and names only. A Watcher is used by one goroutine
// at a time (the store's scan lock serialises it).
package dirwatch

import (
	"bytes"
	"encoding/binary"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// watchMask selects the inotify events that change what the V1 directory
// holds: a file linked in (an unnamed file given its name: IN_CREATE),
// renamed in or written in place, a file removed or renamed out, and the
// directory itself going away.
const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE | unix.IN_DELETE | unix.IN_MOVED_FROM |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// topMask selects the inotify events of Dir that may mean that Dir or the
// V1 directory in it was removed or replaced: an entry removed or renamed
// out (the V1 directory among them), and Dir itself going away or its
// attributes changing (IN_ATTRIB: its link count, among others).
const topMask = unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ATTRIB | unix.IN_ONLYDIR

// linkMask selects the inotify events of the directory that holds Dir when
// Dir is a symlink: the link removed, created or renamed over (ln -sfn),
// and that directory itself going away. A watch on Dir is on the link's
// target, which sees none of these.
const linkMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_DELETE | unix.IN_MOVED_FROM |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// Watcher follows the V1 directory through inotify, so that the index sees
// other processes' batch files arrive and go without listing the directory,
// and Dir, so that the store sees either directory removed or replaced
// without a stat per call. When Dir is a symlink, it also watches the
// directory that holds the link, for the link replaced.
type Watcher struct {
	fd     int
	wd     int    // the watch on the V1 directory
	top    int    // the watch on Dir
	parent int    // the watch on the directory holding Dir when Dir is a symlink, else 0
	v1Name string // the V1 directory's name in Dir
	link   string // Dir's name in its parent, when parent is set
	buf    []byte
}

// New starts watching dir, the V1 directory, and top, the Dir that
// holds it. It fails where inotify is unavailable or its per-user limits
// are reached; the store then polls instead.
func New(dir, top string) (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &Watcher{fd: fd, v1Name: filepath.Base(dir), buf: make([]byte, 64<<10)}
	if err := w.Rewatch(dir, top); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	return w, nil
}

// Rewatch moves the watches to the directories now at dir and top. Events
// of the old watches are ignored from then on.
func (w *Watcher) Rewatch(dir, top string) error {
	if w.wd > 0 {
		_, _ = unix.InotifyRmWatch(w.fd, uint32(w.wd)) // the old directory may be gone
		_, _ = unix.InotifyRmWatch(w.fd, uint32(w.top))
	}
	if w.parent > 0 {
		_, _ = unix.InotifyRmWatch(w.fd, uint32(w.parent))
		w.parent = 0
	}
	wd, err := unix.InotifyAddWatch(w.fd, dir, watchMask)
	if err != nil {
		return err
	}
	topWD, err := unix.InotifyAddWatch(w.fd, top, topMask)
	if err != nil {
		return err
	}
	w.wd, w.top = wd, topWD
	// A symlink Dir: the watches above are on its target, so the link
	// itself is watched in its directory. (The link is checked after the
	// watches are set, so that a swap in between is not missed: checkDir
	// compares the directory it opened with the path's.)
	link := filepath.Clean(top)
	var st unix.Stat_t
	if unix.Lstat(link, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// Without this watch a swap is still seen when a read finds its
		// file gone (see Store.dirCheck).
		if pwd, err := unix.InotifyAddWatch(w.fd, filepath.Dir(link), linkMask); err == nil {
			w.parent, w.link = pwd, filepath.Base(link)
		}
	}
	return nil
}

// Event is what Drain reports of one inotify Event.
type Event int

const (
	Appeared Event = iota // renamed into the directory
	Created               // linked into the directory, or created in it
	Written               // written in place and closed
	Gone                  // removed or renamed out
	Dirs                  // Dir or the V1 directory was removed or moved
)

// Drain reads every pending Event and passes each named one to fn. It
// reports overflow when the kernel dropped events, so that only a full
// listing can tell what changed, and lost when a watch ended for good (its
// file system unmounted, or reading failed). Dir or the V1 directory moved,
// or the V1 directory removed from Dir, is Dirs: the store then checks
// which directories are now at their paths. (A directory removed while the
// store holds it open raises no Event of its own; its removal from its
// parent does.)
func (w *Watcher) Drain(fn func(name string, ev Event)) (overflow, lost bool) {
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
				return overflow, true // the kernel never splits an Event
			}
			wd := int(int32(binary.NativeEndian.Uint32(b)))
			name := string(bytes.TrimRight(b[unix.SizeofInotifyEvent:size], "\x00"))
			b = b[size:]
			switch {
			case mask&unix.IN_Q_OVERFLOW != 0:
				overflow = true
			case wd == w.parent && wd > 0:
				// The link Dir replaced or removed, or the directory that
				// holds it gone (its watch then ends: IN_IGNORED, not a
				// lost watch of the V1 directory).
				if name == w.link || name == "" {
					fn("", Dirs)
				}
			case wd != w.wd && wd != w.top:
				// A watch Rewatch removed.
			case mask&(unix.IN_IGNORED|unix.IN_UNMOUNT) != 0:
				lost = true
				fn("", Dirs)
			case mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
				fn("", Dirs)
			case wd == w.top:
				if name == w.v1Name || name == "" && mask&unix.IN_ATTRIB != 0 {
					// The V1 directory removed or moved, or Dir's own
					// attributes changed: checkDir stats both paths.
					fn(name, Dirs)
				}
			case mask&unix.IN_MOVED_TO != 0:
				fn(name, Appeared)
			case mask&unix.IN_CREATE != 0:
				fn(name, Created)
			case mask&unix.IN_CLOSE_WRITE != 0:
				fn(name, Written)
			case mask&(unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
				fn(name, Gone)
			}
		}
		if n < len(w.buf)-maxEventSize {
			// The read took every Event queued: no second read(2) only to
			// learn EAGAIN. An Event queued since is for the next Drain.
			return overflow, lost
		}
	}
}

// maxEventSize is the size of the largest inotify Event: its header and a
// NUL-terminated name of up to 255 bytes.
const maxEventSize = unix.SizeofInotifyEvent + 256

// Close ends the watch.
func (w *Watcher) Close() error { return unix.Close(w.fd) }

// Magic numbers (statfs f_type) of file systems that other hosts may write
// to: their changes raise no inotify Event here, so a store there polls
// (Config.PollInterval) as well as watching for this host's changes. FUSE
// covers every FUSE client (GlusterFS, 3FS, s3fs, JuiceFS): f_type does not
// say which, and any of them may be shared.
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
	0x01161970: true, // GFS2
	0x7461636f: true, // OCFS2
	0x01021997: true, // 9P
}

// IsNetworkFS reports whether the directory open at fd lies on a file system
// that other hosts may change.
func IsNetworkFS(fd int) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(fd, &st) == nil && networkFS[int64(st.Type)]
}

// FD returns the watcher's inotify descriptor, for a test that makes the
// watch fail under the store.
func (w *Watcher) FD() int { return w.fd }
