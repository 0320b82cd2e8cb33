//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

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

// TestBatchSetV1Faults fails each successive system call of a BatchSetV1
// that spans four batch files, until the call succeeds. Every failing run
// must return the injected error, report a prefix of whole chunks, leave no
// temp file, and leave on disk exactly the chunks it reported, each readable
// byte for byte by a store without faults.
func TestBatchSetV1Faults(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("IOWorkers=%d", workers), func(t *testing.T) { testBatchSetV1Faults(t, workers) })
	}
}

func testBatchSetV1Faults(t *testing.T, workers int) {
	const keysN, perFile = 10, 3
	cfg, p, keys, src, dst := faultFixture(t, keysN)
	for n := int64(1); ; n++ {
		dir := t.TempDir()
		f := &faults{n: n}
		s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(perFile * p.PageBytes()),
			IOWorkers: workers, Sync: true, Syscalls: f.syscalls()}, p)
		ok, err := s.BatchSetV1(keys, src)
		if !f.hit() {
			if err != nil || !all(ok) {
				t.Fatalf("call %d: no fault injected, got %v, %v", n, ok, err)
			}
			t.Logf("BatchSetV1 succeeded after %d injected faults", n-1)
			return
		}
		if !errors.Is(err, unix.EIO) {
			t.Fatalf("call %d: err = %v, want the injected EIO", n, err)
		}
		stored := 0
		for stored < keysN && ok[stored] {
			stored++
		}
		for i := stored; i < keysN; i++ {
			if ok[i] {
				t.Fatalf("call %d: ok = %v is not a prefix", n, ok)
			}
		}
		if stored%perFile != 0 {
			t.Fatalf("call %d: %d keys stored, not whole chunks of %d", n, stored, perFile)
		}
		if left := tempFiles(t, dir); len(left) > 0 {
			t.Fatalf("call %d: temp files left: %v", n, left)
		}
		clean := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
		if got := clean.BatchExists(keys); got != stored {
			t.Fatalf("call %d: %d keys on disk, %d reported stored", n, got, stored)
		}
		got, err := clean.BatchGetV1(keys[:stored], dst[:stored*cfg.PageSize])
		if err != nil || !all(got) {
			t.Fatalf("call %d: reading back the stored keys: %v, %v", n, got, err)
		}
		for i := range stored {
			if !samePages(t, p, src[i*cfg.PageSize], dst[i*cfg.PageSize]) {
				t.Fatalf("call %d: page %d differs", n, i)
			}
		}
		if st := clean.Stats(); st.SkippedFiles != 0 {
			t.Fatalf("call %d: %d files on disk fail their checks", n, st.SkippedFiles)
		}
	}
}

// TestBatchGetV1Faults fails each successive system call of a store that
// opens a directory of batch files and reads them back, until it succeeds.
// Every key reported true must hold exactly its page; a fault may only turn
// keys false.
func TestBatchGetV1Faults(t *testing.T) {
	const keysN, perFile = 10, 3
	cfg, p, keys, src, dst := faultFixture(t, keysN)
	dir := t.TempDir()
	w := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(perFile * p.PageBytes())}, p)
	if ok, err := w.BatchSetV1(keys, src); err != nil || !all(ok) {
		t.Fatalf("BatchSetV1 = %v, %v", ok, err)
	}
	zero := p.GetDummyFlatDataPage()
	for n := int64(1); ; n++ {
		for i := range keysN {
			if err := p.SetFromFlatDataPage(dst[i*cfg.PageSize], zero); err != nil {
				t.Fatal(err)
			}
		}
		f := &faults{n: n}
		s := newStore(t, Config{Dir: dir, ModelName: "m", IOWorkers: 2, Syscalls: f.syscalls()}, p)
		ok, err := s.BatchGetV1(keys, dst)
		if err != nil {
			t.Fatalf("call %d: BatchGetV1 returned %v; a fault must only make keys false", n, err)
		}
		for i := range keysN {
			if ok[i] && !samePages(t, p, src[i*cfg.PageSize], dst[i*cfg.PageSize]) {
				t.Fatalf("call %d: key %d reported true with wrong bytes", n, i)
			}
		}
		if !f.hit() {
			if !all(ok) {
				t.Fatalf("call %d: no fault injected, got %v", n, ok)
			}
			t.Logf("BatchGetV1 succeeded after %d injected faults", n-1)
			return
		}
	}
}

// TestSetFaults fails each successive system call of Set until it succeeds:
// the key's file is either absent or whole, and no temp file is left.
func TestSetFaults(t *testing.T) {
	value := bytes.Repeat([]byte("page"), 256)
	for n := int64(1); ; n++ {
		dir := t.TempDir()
		f := &faults{n: n}
		s := newStore(t, Config{Dir: dir, ModelName: "m", Sync: true, Syscalls: f.syscalls()}, nil)
		err := s.Set("key", value)
		if left := tempFiles(t, dir); len(left) > 0 {
			t.Fatalf("call %d: temp files left: %v", n, left)
		}
		data, rerr := os.ReadFile(s.FilePath("key"))
		switch {
		case !f.hit():
			if err != nil || !bytes.Equal(data, value) {
				t.Fatalf("call %d: no fault injected, got %v", n, err)
			}
			return
		case !errors.Is(err, unix.EIO):
			t.Fatalf("call %d: err = %v, want the injected EIO", n, err)
		case rerr == nil && !bytes.Equal(data, value):
			t.Fatalf("call %d: a partial file is visible under the final name", n)
		}
	}
}
