//go:build linux

package hicachefile

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// newPool returns a pool of cfg closed at the end of the test.
func newPool(t testing.TB, cfg hostcache.Config) *hostcache.Pool {
	t.Helper()
	p, err := hostcache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// newStore returns a store on dir with pool registered, closed at the end of
// the test.
func newStore(t testing.TB, cfg Config, p *hostcache.Pool) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if p != nil {
		if err := s.RegisterMemPoolHost(p); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// fillRandom writes random bytes into every page at indices.
func fillRandom(t testing.TB, p *hostcache.Pool, indices []int64) {
	t.Helper()
	bufs, err := p.PageBuffers(indices)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bufs {
		_, _ = rand.Read(b)
	}
}

// randomPages returns a pool of mhaCfg with n pages of random bytes
// allocated at idx.
func randomPages(t testing.TB, n int) (*hostcache.Pool, []int64) {
	t.Helper()
	p := newPool(t, mhaCfg)
	idx, err := p.Alloc(n * mhaCfg.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, p, idx)
	return p, idx
}

var mhaCfg = hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.LayerFirst, DType: hostcache.Float16,
	PageSize: 4, Pages: 16, LayerNum: 3, HeadNum: 2, HeadDim: 8}

func all(ok []bool) bool {
	for _, b := range ok {
		if !b {
			return false
		}
	}
	return true
}

// bothModes runs test once with inotify watching and once polling.
func bothModes(t *testing.T, test func(t *testing.T, noWatch bool)) {
	for _, noWatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoWatch=%v", noWatch), func(t *testing.T) { test(t, noWatch) })
	}
}

// keyPage returns the page bytes that belong to key k: anyone can check a
// page served for k without knowing who wrote it.
func keyPage(k string, n int) []byte {
	b := make([]byte, n)
	keyedPage(k, b)
	return b
}

// keyedPage fills page with bytes derived from key alone, so that a reader
// can tell whether a page served under key is key's.
func keyedPage(key string, page []byte) {
	h := fnv.New64a()
	h.Write([]byte(key))
	x := h.Sum64()
	for i := 0; i+8 <= len(page); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(page[i:], x)
	}
}

// faults fails the n-th system call made through its Syscalls with EIO, and
// lets every other call through to the kernel.
type faults struct {
	n     int64
	calls atomic.Int64
}

func (f *faults) fail() bool { return f.calls.Add(1) == f.n }

// hit reports whether the injected fault has fired.
func (f *faults) hit() bool { return f.calls.Load() >= f.n }

func (f *faults) syscalls() Syscalls {
	return Syscalls{
		Openat: func(dirfd int, path string, flags int, mode uint32) (int, error) {
			if f.fail() {
				return -1, unix.EIO
			}
			return unix.Openat(dirfd, path, flags, mode)
		},
		Preadv: func(fd int, iovs [][]byte, off int64) (int, error) {
			if f.fail() {
				return 0, unix.EIO
			}
			return unix.Preadv(fd, iovs, off)
		},
		Pwritev: func(fd int, iovs [][]byte, off int64) (int, error) {
			if f.fail() {
				return 0, unix.EIO
			}
			return unix.Pwritev(fd, iovs, off)
		},
		Fdatasync: func(fd int) error {
			if f.fail() {
				return unix.EIO
			}
			return unix.Fdatasync(fd)
		},
		Fsync: func(fd int) error {
			if f.fail() {
				return unix.EIO
			}
			return unix.Fsync(fd)
		},
		Close: func(fd int) error {
			err := unix.Close(fd) // the descriptor is gone either way, as with a real EIO
			if f.fail() {
				return unix.EIO
			}
			return err
		},
		Renameat: func(olddirfd int, oldpath string, newdirfd int, newpath string) error {
			if f.fail() {
				return unix.EIO
			}
			return unix.Renameat(olddirfd, oldpath, newdirfd, newpath)
		},
		Linkat: func(olddirfd int, oldpath string, newdirfd int, newpath string, flags int) error {
			if f.fail() {
				return unix.EIO
			}
			return unix.Linkat(olddirfd, oldpath, newdirfd, newpath, flags)
		},
		Unlinkat: func(dirfd int, path string, flags int) error {
			if f.fail() {
				return unix.EIO
			}
			return unix.Unlinkat(dirfd, path, flags)
		},
		FcntlFlock: func(fd uintptr, cmd int, lk *unix.Flock_t) error {
			if f.fail() {
				return unix.EIO
			}
			return unix.FcntlFlock(fd, cmd, lk)
		},
	}
}

// tempFiles lists the temp files left in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, tmpExt) {
			left = append(left, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// samePages reports whether the pages at a and b hold the same bytes.
func samePages(t *testing.T, p *hostcache.Pool, a, b int64) bool {
	t.Helper()
	x, err := p.GetDataPage(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := p.GetDataPage(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

// faultFixture returns a pool with n pages of random bytes at src, n free
// pages at dst, and n keys for them.
func faultFixture(t *testing.T, n int) (cfg hostcache.Config, p *hostcache.Pool, keys []string, src, dst []int64) {
	t.Helper()
	cfg = mhaCfg
	cfg.Pages = 2 * n
	p = newPool(t, cfg)
	src, _ = p.Alloc(n * cfg.PageSize)
	dst, _ = p.Alloc(n * cfg.PageSize)
	fillRandom(t, p, src)
	keys = make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	return cfg, p, keys, src, dst
}

// onDisk reports whether a fresh store on dir finds key in V1.
func onDisk(t *testing.T, dir string, p *hostcache.Pool, key string) bool {
	t.Helper()
	s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true}, p)
	_, ok := s.Locate(key)
	return ok
}

// within fails the test if fn has not returned after a few seconds: a call
// blocked on a FIFO never returns.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}

// plant puts a special file of the given kind at path: a FIFO, a symlink to
// a regular file of size bytes, a directory, a socket, or a character
// device. Where this process may not make a device (mknod needs
// CAP_MKNOD), it skips the test, saying so.
func plant(t *testing.T, kind, path string, size int) {
	t.Helper()
	var err error
	switch kind {
	case "fifo":
		err = unix.Mkfifo(path, 0o644)
	case "symlink":
		target := path + ".target"
		if err = os.WriteFile(target, make([]byte, size), 0o644); err == nil {
			err = os.Symlink(target, path)
		}
	case "dir":
		err = os.Mkdir(path, 0o755)
	case "socket":
		// Bound through the directory's descriptor: a socket's path may
		// have at most 107 bytes, fewer than a temp dir and a V1 directory.
		var fd, dfd int
		if dfd, err = unix.Open(filepath.Dir(path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			break
		}
		defer unix.Close(dfd)
		if fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0); err == nil {
			err = unix.Bind(fd, &unix.SockaddrUnix{Name: fmt.Sprintf("/proc/self/fd/%d/%s", dfd, filepath.Base(path))})
			_ = unix.Close(fd)
		}
	case "device":
		mkdev(t, path, 3) // /dev/null's numbers
		return
	}
	if err != nil {
		t.Fatalf("plant %s at %s: %v", kind, path, err)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// shmDir returns a new directory on tmpfs (/dev/shm) removed after the
// test, or t.TempDir() where there is none.
func shmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "hicachefile-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// writeTempFile writes a temp file of size bytes at path, aged by age. With
// live, it stays open under an OFD write lock until the test ends, as a
// live writer's does; otherwise it is closed, as a dead writer's is.
func writeTempFile(t *testing.T, path string, size int, age time.Duration, live bool) {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Pwrite(fd, make([]byte, size), 0); err != nil {
		t.Fatal(err)
	}
	if live {
		lk := unix.Flock_t{Type: unix.F_WRLCK}
		if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Close(fd) })
	} else {
		_ = unix.Close(fd)
	}
	old := time.Now().Add(-age)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
}

// batchFileCount counts the batch files in the store's V1 directory.
func batchFileCount(t *testing.T, s *Store) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.v1Dir, "*"+batchExt))
	if err != nil {
		t.Fatal(err)
	}
	return len(files)
}

// oneKeyFile is the size of a batch file holding one page under a
// two-byte key, written by a store of model "m".
func oneKeyFile(pageBytes int) int64 {
	return int64(pageBytes) + IndexSize([]string{"k0"}) + IdentitySize("m") + TrailerSize
}

// batchFiles returns the batch files under dir.
func batchFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*", "*"+batchExt))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// tempsIn returns the paths of the store's temp files in Dir and its V1
// directory.
func tempsIn(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	for _, d := range []string{s.dir, s.v1Dir} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if s.isTmpName(e.Name()) {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
	}
	return out
}

// refuseTmpfile is an Openat that refuses O_TMPFILE as some FUSE and NFS
// file systems do.
func refuseTmpfile(dirfd int, path string, flags int, mode uint32) (int, error) {
	if flags&unix.O_TMPFILE == unix.O_TMPFILE {
		return -1, unix.EOPNOTSUPP
	}
	return unix.Openat(dirfd, path, flags, mode)
}

// mkdev makes the character device 1,minor (/dev/null 3, /dev/zero 5) at
// path; where this process may not (mknod needs CAP_MKNOD), it skips the
// test, saying so.
func mkdev(t *testing.T, path string, minor int) {
	t.Helper()
	err := unix.Mknod(path, unix.S_IFCHR|0o644, int(unix.Mkdev(1, uint32(minor))))
	if err == unix.EPERM {
		t.Skipf("cannot make a character device at %s: mknod needs CAP_MKNOD (%v)", path, err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// putOver puts the file from in place of the file to: by copying its bytes
// into to (cp: the same inode, another content) when inPlace, else by
// renaming it over to.
func putOver(t *testing.T, from, to string, inPlace bool) {
	t.Helper()
	if !inPlace {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, data, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// inflightLen returns how many names s expects its watcher to see
// (expectOwn) and how many commits it has in flight.
func inflightLen(s *Store) (own, names int) {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	return len(s.inflight.own), len(s.inflight.names)
}

// zeroPages zeroes every page at indices.
func zeroPages(t *testing.T, p *hostcache.Pool, indices []int64) {
	t.Helper()
	bufs, err := p.PageBuffers(indices)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bufs {
		clear(b)
	}
}

// flood raises more inotify events in dir than a watcher's queue holds
// (fs.inotify.max_queued_events, 16384 by default), so that the kernel
// drops the ones after and queues an overflow.
func flood(t *testing.T, dir string) {
	t.Helper()
	n := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		if m, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && m < 1<<20 {
			n = m
		}
	}
	path := filepath.Join(dir, "flood")
	for range n/2 + 1 {
		fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644) // IN_CREATE
		if err != nil {
			t.Fatal(err)
		}
		_ = unix.Close(fd)
		if err := unix.Unlink(path); err != nil { // IN_DELETE
			t.Fatal(err)
		}
	}
}

// statsDelta returns the counters of b minus those of a that a read
// changes.
func statsDelta(a, b Stats) Stats {
	return Stats{Gets: b.Gets - a.Gets, GetBytes: b.GetBytes - a.GetBytes, Hits: b.Hits - a.Hits, Misses: b.Misses - a.Misses,
		Corrupt: b.Corrupt - a.Corrupt, Mismatch: b.Mismatch - a.Mismatch, Errors: b.Errors - a.Errors,
		SpecialFiles: b.SpecialFiles - a.SpecialFiles, SkippedFiles: b.SkippedFiles - a.SkippedFiles}
}

// flipAt inverts the byte at off of the file at path.
func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// truncateTo sets the size of the file at path.
func truncateTo(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// countTrue returns how many of ok are true.
func countTrue(ok []bool) int {
	c := 0
	for _, b := range ok {
		if b {
			c++
		}
	}
	return c
}

// seedCfg is the seed's mock page: 64 tokens of 4 fp16 values, 512 bytes.
var seedCfg = hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.Float16,
	PageSize: 64, LayerNum: 1, HeadNum: 1, HeadDim: 2}

// sglangKey returns an SGLang-style key: the sha256 hex of its arguments.
func sglangKey(args ...any) string {
	h := sha256.Sum256([]byte(fmt.Sprint(args...)))
	return hex.EncodeToString(h[:])
}

// countingSyscalls is a Syscalls that counts every call it lets through.
type countingSyscalls struct{ n atomic.Int64 }

func (c *countingSyscalls) syscalls() Syscalls {
	return Syscalls{
		Openat: func(dirfd int, path string, flags int, mode uint32) (int, error) {
			c.n.Add(1)
			return unix.Openat(dirfd, path, flags, mode)
		},
		Preadv: func(fd int, iovs [][]byte, off int64) (int, error) {
			c.n.Add(1)
			return preadvRaw(fd, iovs, off)
		},
		Pwritev: func(fd int, iovs [][]byte, off int64) (int, error) {
			c.n.Add(1)
			return pwritevRaw(fd, iovs, off)
		},
		Fdatasync: func(fd int) error { c.n.Add(1); return unix.Fdatasync(fd) },
		Fsync:     func(fd int) error { c.n.Add(1); return unix.Fsync(fd) },
		Close:     func(fd int) error { c.n.Add(1); return unix.Close(fd) },
		Renameat: func(olddirfd int, oldpath string, newdirfd int, newpath string) error {
			c.n.Add(1)
			return unix.Renameat(olddirfd, oldpath, newdirfd, newpath)
		},
		Linkat: func(olddirfd int, oldpath string, newdirfd int, newpath string, flags int) error {
			c.n.Add(1)
			return unix.Linkat(olddirfd, oldpath, newdirfd, newpath, flags)
		},
		Unlinkat: func(dirfd int, path string, flags int) error {
			c.n.Add(1)
			return unix.Unlinkat(dirfd, path, flags)
		},
		FcntlFlock: func(fd uintptr, cmd int, lk *unix.Flock_t) error {
			c.n.Add(1)
			return unix.FcntlFlock(fd, cmd, lk)
		},
	}
}

// cpuTime returns the CPU time (user and system) the process has used. On
// a machine that others load, the ratio of CPU times is steadier than the
// ratio of wall times: a longer call is more often descheduled midway.
func cpuTime() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeHooks are the moments of a write at which a test acts: fill before
// each pwritev, placed once a file has got a batch file's name, by a link
// (an unnamed file) or a rename (a temp file: with MaxBytes, or where
// O_TMPFILE is refused). Either may be nil.
type writeHooks struct {
	fill   func()
	placed func(name string)
}

// syscalls returns Syscalls that make the real calls and run the hooks.
func (h writeHooks) syscalls() Syscalls {
	after := func(name string, err error) error {
		if err == nil && h.placed != nil && strings.HasSuffix(name, batchExt) {
			h.placed(name)
		}
		return err
	}
	return Syscalls{
		Pwritev: func(fd int, iovs [][]byte, off int64) (int, error) {
			if h.fill != nil {
				h.fill()
			}
			return pwritevRaw(fd, iovs, off)
		},
		Linkat: func(od int, op string, nd int, np string, fl int) error {
			return after(np, unix.Linkat(od, op, nd, np, fl))
		},
		Renameat: func(od int, op string, nd int, np string) error {
			return after(np, unix.Renameat(od, op, nd, np))
		},
	}
}

// requireDirectIO skips the test, saying why, where the file system of dir
// takes no O_DIRECT reads of 4 KiB-aligned buffers (tmpfs before Linux 6.6,
// some FUSE and overlay file systems), as the store finds out for itself
// when it opens a batch file with Config.DirectIO.
func requireDirectIO(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, ".direct-probe")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.Remove(path) }()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("the file system of %s takes no O_DIRECT (open: %v)", dir, err)
	}
	defer func() { _ = unix.Close(fd) }()
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st); err == nil && st.Mask&unix.STATX_DIOALIGN != 0 {
		if st.Dio_mem_align == 0 || st.Dio_offset_align == 0 {
			t.Skipf("the file system of %s takes no O_DIRECT for this file (statx DIOALIGN 0)", dir)
		}
		if st.Dio_mem_align > 4096 || st.Dio_offset_align > 4096 {
			t.Skipf("the file system of %s asks O_DIRECT alignment %d/%d, above the 4 KiB of the test's buffers",
				dir, st.Dio_mem_align, st.Dio_offset_align)
		}
	}
}
