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
	"math/bits"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
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

// errorFS returns an errorFS that makes the real calls and runs the
// hooks, to which a test may add rules of its own.
func (h writeHooks) errorFS() *errorFS {
	e := newErrorFS()
	if h.fill != nil {
		e.before(opPwritev, func(*sysCall) { h.fill() })
	}
	if h.placed != nil {
		e.after(opLinkat|opRenameat, func(c *sysCall, err error) {
			if err == nil && strings.HasSuffix(c.path, batchExt) {
				h.placed(c.path)
			}
		})
	}
	return e
}

// syscalls returns Syscalls that make the real calls and run the hooks.
func (h writeHooks) syscalls() Syscalls { return h.errorFS().syscalls() }

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

// sysOp names the calls of the Syscalls seam, as a set of bits.
type sysOp uint16

// The calls of the Syscalls seam.
const (
	opOpenat sysOp = 1 << iota
	opPreadv
	opPwritev
	opFdatasync
	opFsync
	opClose
	opRenameat
	opLinkat
	opUnlinkat
	opFcntlFlock
	opFstatfs
	numOps = iota

	opAll = 1<<numOps - 1
)

// sysCall is one call of the seam as an errorFS rule or hook sees it.
type sysCall struct {
	op    sysOp
	fd    int            // the file; the directory for Openat and Unlinkat; the new directory for Renameat and Linkat
	path  string         // Openat, Unlinkat: the path; Renameat, Linkat: the new path
	old   string         // Renameat, Linkat: the old path
	flags int            // Openat, Linkat, Unlinkat: the flags; FcntlFlock: the command
	iovs  [][]byte       // Preadv, Pwritev
	off   int64          // Preadv, Pwritev
	lk    *unix.Flock_t  // FcntlFlock
	stat  *unix.Statfs_t // Fstatfs
	ret   int            // after the call: the descriptor Openat returned, the bytes Preadv or Pwritev moved
}

// errorFS is a fault injector for the Syscalls seam, in the manner of
// pebble's vfs/errorfs: a test adds rules ("fail the 3rd Preadv with EIO",
// "fail every Openat of a batch file while armed") and hooks, and hands
// fs.syscalls() to a store. Each call meets the rules and hooks in the
// order added: the first rule that matches fails the call with its error
// and the real call is not made (except Close, which closes the
// descriptor first, as close(2) does even when it reports an error);
// otherwise the real call is made and the after hooks see its result.
// errorFS sees only the calls of the kinds its rules and hooks name, or
// that counting asks for: it leaves the other fields of the Syscalls it
// returns nil, so that the store takes the same paths as with no seam
// there (loading uses preadNowait only when Syscalls.Preadv is nil). It
// counts the calls it sees of each kind, the calls it failed, and the
// bytes read and written.
type errorFS struct {
	watched  sysOp // the calls it sees; the others go straight to the kernel
	rules    []fsRule
	calls    [numOps]atomic.Int64
	injected atomic.Int64
	read     atomic.Int64 // bytes Preadv moved
	written  atomic.Int64 // bytes Pwritev moved
}

// fsRule is one rule or hook of an errorFS, for the calls of ops.
type fsRule struct {
	ops    sysOp
	when   func(c *sysCall) bool       // a rule: fail the call with err when it reports true (nil: always)
	err    error                       // a rule's error; nil for a hook
	before func(c *sysCall)            // a hook run before the call
	after  func(c *sysCall, err error) // a hook run after the real call
}

// newErrorFS returns an errorFS with no rules: every call goes to the
// kernel, counted.
func newErrorFS() *errorFS { return &errorFS{} }

// fail adds a rule: a call of ops for which when reports true (every call
// of ops when when is nil) fails with err.
func (e *errorFS) fail(ops sysOp, when func(c *sysCall) bool, err error) *errorFS {
	e.rules = append(e.rules, fsRule{ops: ops, when: when, err: err})
	e.watched |= ops
	return e
}

// before adds a hook that runs before each call of ops that no earlier
// rule failed.
func (e *errorFS) before(ops sysOp, fn func(c *sysCall)) *errorFS {
	e.rules = append(e.rules, fsRule{ops: ops, before: fn})
	e.watched |= ops
	return e
}

// after adds a hook that runs after each real call of ops, with its error.
func (e *errorFS) after(ops sysOp, fn func(c *sysCall, err error)) *errorFS {
	e.rules = append(e.rules, fsRule{ops: ops, after: fn})
	e.watched |= ops
	return e
}

// counting makes e see, and count, the calls of ops that no rule or hook
// names.
func (e *errorFS) counting(ops sysOp) *errorFS {
	e.watched |= ops
	return e
}

// count returns how many calls of ops e has seen, failed or not (none of
// a kind it does not see).
func (e *errorFS) count(ops sysOp) int64 {
	var n int64
	for i := range numOps {
		if ops&(1<<i) != 0 {
			n += e.calls[i].Load()
		}
	}
	return n
}

// fired reports how many calls a rule has failed.
func (e *errorFS) fired() int64 { return e.injected.Load() }

// nth matches the n-th call it is asked about (from 1), and no other.
func nth(n int64) func(*sysCall) bool {
	var seen atomic.Int64
	return func(*sysCall) bool { return seen.Add(1) == n }
}

// pathSuffix matches a call whose path (the new path of Renameat and
// Linkat) ends in suffix.
func pathSuffix(suffix string) func(*sysCall) bool {
	return func(c *sysCall) bool { return strings.HasSuffix(c.path, suffix) }
}

// withFlags matches a call whose flags hold every bit of f.
func withFlags(f int) func(*sysCall) bool {
	return func(c *sysCall) bool { return c.flags&f == f }
}

// failNthCall returns an errorFS that fails the n-th call through the
// seam, of any kind but Fstatfs, with EIO, and lets every other call
// through to the kernel.
func failNthCall(n int64) *errorFS {
	return newErrorFS().fail(opAll&^opFstatfs, nth(n), unix.EIO)
}

// refuseTmpfile adds a rule to e: an Openat with O_TMPFILE fails with
// EOPNOTSUPP, as on some FUSE and NFS file systems.
func (e *errorFS) refuseTmpfile() *errorFS {
	return e.fail(opOpenat, withFlags(unix.O_TMPFILE), unix.EOPNOTSUPP)
}

// enter counts c and runs the rules and before hooks: it returns the
// error of the first rule that fails c.
func (e *errorFS) enter(c *sysCall) error {
	for _, r := range e.rules {
		if r.ops&c.op == 0 {
			continue
		}
		switch {
		case r.err != nil:
			if r.when == nil || r.when(c) {
				e.injected.Add(1)
				return r.err
			}
		case r.before != nil:
			r.before(c)
		}
	}
	return nil
}

// leave runs the after hooks of c's real call.
func (e *errorFS) leave(c *sysCall, err error) {
	for _, r := range e.rules {
		if r.ops&c.op != 0 && r.after != nil {
			r.after(c, err)
		}
	}
}

// opIndex returns the index in calls of the one op in o.
func opIndex(o sysOp) int { return bits.TrailingZeros16(uint16(o)) }

// plain counts a call of op and reports whether e has no rules or hooks,
// so that the call goes straight to the kernel.
func (e *errorFS) plain(op sysOp) bool {
	e.calls[opIndex(op)].Add(1)
	return len(e.rules) == 0
}

// around runs c through the rules and before hooks, makes the real call
// unless a rule failed c, and runs the after hooks. A failed Openat
// returns -1, any other failed call 0. Close is made first: the rules
// decide only what it returns.
func (e *errorFS) around(c *sysCall, real func() (int, error)) (int, error) {
	if c.op == opClose {
		_, err := real()
		if ierr := e.enter(c); ierr != nil {
			return 0, ierr
		}
		e.leave(c, err)
		return 0, err
	}
	if err := e.enter(c); err != nil {
		if c.op == opOpenat {
			return -1, err
		}
		return 0, err
	}
	n, err := real()
	c.ret = n
	e.leave(c, err)
	return n, err
}

// syscalls returns the Syscalls that go through e: nil fields for the
// calls e does not see. Without rules or hooks a call costs a count and
// nothing more.
func (e *errorFS) syscalls() Syscalls {
	k := Syscalls{}.withDefaults()
	done := func(_ int, err error) error { return err }
	noRet := func(err error) (int, error) { return 0, err }
	// read and written add what a Preadv or Pwritev moved to e's counts.
	read := func(n int, err error) (int, error) { e.read.Add(int64(max(n, 0))); return n, err }
	written := func(n int, err error) (int, error) { e.written.Add(int64(max(n, 0))); return n, err }
	sys := Syscalls{
		Openat: func(dirfd int, path string, flags int, mode uint32) (int, error) {
			if e.plain(opOpenat) {
				return k.Openat(dirfd, path, flags, mode)
			}
			return e.around(&sysCall{op: opOpenat, fd: dirfd, path: path, flags: flags}, func() (int, error) {
				return k.Openat(dirfd, path, flags, mode)
			})
		},
		Preadv: func(fd int, iovs [][]byte, off int64) (int, error) {
			if e.plain(opPreadv) {
				return read(k.Preadv(fd, iovs, off))
			}
			return read(e.around(&sysCall{op: opPreadv, fd: fd, iovs: iovs, off: off}, func() (int, error) {
				return k.Preadv(fd, iovs, off)
			}))
		},
		Pwritev: func(fd int, iovs [][]byte, off int64) (int, error) {
			if e.plain(opPwritev) {
				return written(k.Pwritev(fd, iovs, off))
			}
			return written(e.around(&sysCall{op: opPwritev, fd: fd, iovs: iovs, off: off}, func() (int, error) {
				return k.Pwritev(fd, iovs, off)
			}))
		},
		Fdatasync: func(fd int) error {
			if e.plain(opFdatasync) {
				return k.Fdatasync(fd)
			}
			return done(e.around(&sysCall{op: opFdatasync, fd: fd}, func() (int, error) { return noRet(k.Fdatasync(fd)) }))
		},
		Fsync: func(fd int) error {
			if e.plain(opFsync) {
				return k.Fsync(fd)
			}
			return done(e.around(&sysCall{op: opFsync, fd: fd}, func() (int, error) { return noRet(k.Fsync(fd)) }))
		},
		Close: func(fd int) error {
			if e.plain(opClose) {
				return k.Close(fd)
			}
			return done(e.around(&sysCall{op: opClose, fd: fd}, func() (int, error) { return noRet(k.Close(fd)) }))
		},
		Renameat: func(olddirfd int, oldpath string, newdirfd int, newpath string) error {
			if e.plain(opRenameat) {
				return k.Renameat(olddirfd, oldpath, newdirfd, newpath)
			}
			return done(e.around(&sysCall{op: opRenameat, fd: newdirfd, path: newpath, old: oldpath}, func() (int, error) {
				return noRet(k.Renameat(olddirfd, oldpath, newdirfd, newpath))
			}))
		},
		Linkat: func(olddirfd int, oldpath string, newdirfd int, newpath string, flags int) error {
			if e.plain(opLinkat) {
				return k.Linkat(olddirfd, oldpath, newdirfd, newpath, flags)
			}
			return done(e.around(&sysCall{op: opLinkat, fd: newdirfd, path: newpath, old: oldpath, flags: flags}, func() (int, error) {
				return noRet(k.Linkat(olddirfd, oldpath, newdirfd, newpath, flags))
			}))
		},
		Unlinkat: func(dirfd int, path string, flags int) error {
			if e.plain(opUnlinkat) {
				return k.Unlinkat(dirfd, path, flags)
			}
			return done(e.around(&sysCall{op: opUnlinkat, fd: dirfd, path: path, flags: flags}, func() (int, error) {
				return noRet(k.Unlinkat(dirfd, path, flags))
			}))
		},
		FcntlFlock: func(fd uintptr, cmd int, lk *unix.Flock_t) error {
			if e.plain(opFcntlFlock) {
				return k.FcntlFlock(fd, cmd, lk)
			}
			return done(e.around(&sysCall{op: opFcntlFlock, fd: int(fd), flags: cmd, lk: lk}, func() (int, error) {
				return noRet(k.FcntlFlock(fd, cmd, lk))
			}))
		},
		Fstatfs: func(fd int, buf *unix.Statfs_t) error {
			if e.plain(opFstatfs) {
				return k.Fstatfs(fd, buf)
			}
			return done(e.around(&sysCall{op: opFstatfs, fd: fd, stat: buf}, func() (int, error) { return noRet(k.Fstatfs(fd, buf)) }))
		},
	}
	for _, f := range []struct {
		op    sysOp
		field any
	}{
		{opOpenat, &sys.Openat}, {opPreadv, &sys.Preadv}, {opPwritev, &sys.Pwritev},
		{opFdatasync, &sys.Fdatasync}, {opFsync, &sys.Fsync}, {opClose, &sys.Close},
		{opRenameat, &sys.Renameat}, {opLinkat, &sys.Linkat}, {opUnlinkat, &sys.Unlinkat},
		{opFcntlFlock, &sys.FcntlFlock}, {opFstatfs, &sys.Fstatfs},
	} {
		if e.watched&f.op == 0 {
			reflect.ValueOf(f.field).Elem().SetZero()
		}
	}
	return sys
}

// suffixTwins are pairs of identities whose SGLang suffixes coincide, one
// of each kind the suffix rules allow (see Naming in doc.go).
var suffixTwins = []struct {
	name string
	a, b Config
}{
	{"slash and dash", Config{ModelName: "org/m"}, Config{ModelName: "org-m"}},
	{"MHA TP and MLA", Config{ModelName: "m"}, Config{ModelName: "m_0_1", IsMLA: true}},
	{"MLA PP and MLA", Config{ModelName: "m", IsMLA: true, PPRank: 0, PPSize: 2}, Config{ModelName: "m_2_0", IsMLA: true}},
	{"MHA TP PP and MLA", Config{ModelName: "m", PPRank: 0, PPSize: 2}, Config{ModelName: "m_0_1_2_0", IsMLA: true}},
	{"MHA TP PP and MLA PP", Config{ModelName: "m", PPRank: 1, PPSize: 2}, Config{ModelName: "m_0_1", IsMLA: true, PPRank: 1, PPSize: 2}},
}

// lruBytes is what the store counts against MaxBytes.
func lruBytes(s *Store) int64 { return s.lru.Used() }

// storeOf returns a Store with only the naming state of cfg: enough for the
// name predicates and checkKey.
func storeOf(t *testing.T, cfg Config) *Store {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := cfg.withDefaults()
	return &Store{cfg: c, names: names{suffix: c.suffix(), digest: c.identityDigest()}}
}

// newMeasured opens a store with cfg and returns it, the time New took,
// and the heap it kept after a garbage collection.
func newMeasured(b *testing.B, cfg Config) (*Store, time.Duration, float64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	h0 := ms.HeapAlloc
	t0 := time.Now()
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(t0)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return s, took, float64(ms.HeapAlloc) - float64(h0)
}

// untilClosed calls body over and over until stop is closed or body
// returns false: the loop of a test's worker goroutines.
func untilClosed(stop <-chan struct{}, body func() bool) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		if !body() {
			return
		}
	}
}
