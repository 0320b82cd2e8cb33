//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// smallDisk simulates a file system of capacity bytes holding dir: a write
// that would take the bytes of the files under dir past it fails with
// ENOSPC, and statfs reports what is left.
type smallDisk struct {
	t        *testing.T
	dir      string
	capacity int64
}

func (d *smallDisk) used() int64 {
	var n int64
	_ = filepath.WalkDir(d.dir, func(_ string, e os.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// syscalls returns Syscalls on a disk of d.capacity bytes: a write past
// it fails with ENOSPC, and fstatfs reports what is left.
func (d *smallDisk) syscalls() Syscalls {
	sys := newErrorFS().fail(opPwritev, func(c *sysCall) bool {
		n := int64(0)
		for _, b := range c.iovs {
			n += int64(len(b))
		}
		return d.used()+n > d.capacity
	}, unix.ENOSPC).syscalls()
	sys.Fstatfs = func(fd int, st *unix.Statfs_t) error {
		*st = unix.Statfs_t{Bsize: 1, Bavail: uint64(max(0, d.capacity-d.used()))}
		return nil
	}
	return sys
}

// TestFullDiskMakesRoom: with MaxBytes above what the disk can hold, or
// with MinFreeBytes, a write that meets a full disk evicts the store's own
// files and tries again; with neither set, ENOSPC is the call's error.
func TestFullDiskMakesRoom(t *testing.T) {
	ps := mhaCfg.PageSize
	for _, c := range []struct {
		name       string
		cfg        Config
		wantErrors bool
	}{
		{"MaxBytes", Config{MaxBytes: 1 << 40}, false},
		{"MinFreeBytes", Config{MinFreeBytes: 1}, false},
		{"neither", Config{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, idx := randomPages(t, 1)
			page, _ := p.GetDataPage(idx[0])
			file := oneKeyFile(p.PageBytes())
			d := &smallDisk{t: t, dir: t.TempDir(), capacity: 5 * file}
			cfg := c.cfg
			cfg.Dir, cfg.ModelName, cfg.Syscalls = d.dir, "m", d.syscalls()
			s := newStore(t, cfg, p)
			failed := 0
			for i := range 20 {
				if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx[:ps]); err != nil || !ok[0] {
					failed++
					if !errors.Is(err, unix.ENOSPC) {
						t.Fatalf("BatchSetV1 = %v, %v", ok, err)
					}
				}
				if err := s.Set(fmt.Sprint("o", i), page); err != nil {
					failed++
					if !errors.Is(err, unix.ENOSPC) {
						t.Fatal(err)
					}
				}
			}
			if c.wantErrors && failed == 0 {
				t.Errorf("no write failed with neither MaxBytes nor MinFreeBytes on a full disk")
			}
			if !c.wantErrors && failed > 0 {
				t.Errorf("%d of 40 writes failed with ENOSPC while the store held evictable files; stats %+v", failed, s.Stats())
			}
			if !c.wantErrors && !s.Exists("k19") {
				t.Errorf("the last page written is not stored")
			}
		})
	}
}

// TestMinFreeBytesKeptFree: eviction keeps the file system's free space at or
// above Config.MinFreeBytes.
func TestMinFreeBytesKeptFree(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 1)
	file := oneKeyFile(p.PageBytes())
	d := &smallDisk{t: t, dir: t.TempDir(), capacity: 10 * file}
	s := newStore(t, Config{Dir: d.dir, ModelName: "m", MinFreeBytes: 4 * file, Syscalls: d.syscalls()}, p)
	for i := range 20 {
		if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if free := d.capacity - d.used(); free < 4*file {
			t.Fatalf("after write %d: %d bytes free, MinFreeBytes is %d", i, free, 4*file)
		}
	}
	if s.Stats().Evicted == 0 {
		t.Errorf("nothing evicted")
	}
}

// TestNoSpaceErrorReportedOnce: when two IO workers both meet ENOSPC, the
// call's error says so once, not as two identical joined lines.
func TestNoSpaceErrorReportedOnce(t *testing.T) {
	cfg := mhaCfg
	cfg.Pages = 4096 // 3 MiB of 768-byte pages: one file, split between two workers
	p := newPool(t, cfg)
	idx, _ := p.Alloc(cfg.Pages * cfg.PageSize)
	keys := make([]string, cfg.Pages)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	sys := newErrorFS().fail(opPwritev, nil, unix.ENOSPC).syscalls()
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", IOWorkers: 2, Syscalls: sys}, p)
	_, err := s.BatchSetV1(keys, idx)
	if n := strings.Count(fmt.Sprint(err), unix.ENOSPC.Error()); n != 1 {
		t.Errorf("error %q reports ENOSPC %d times, want once", err, n)
	}
}

// TestPageLargerThanMaxBytesRefused: a page that could never fit is
// refused, not written and then evicted.
func TestPageLargerThanMaxBytesRefused(t *testing.T) {
	p, idx := randomPages(t, 1)
	page, _ := p.GetDataPage(idx[0])
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MaxBytes: int64(len(page) - 1)}, p)
	if err := s.Set("k", page); !errors.Is(err, ErrRefused) {
		t.Fatalf("Set = %v, want ErrRefused", err)
	}
	if ok, err := s.BatchSetV1([]string{"k"}, idx); err != nil || ok[0] {
		t.Fatalf("BatchSetV1 = %v, %v; want false, nil", ok, err)
	}
	if s.Exists("k") || batchFileCount(t, s) != 0 {
		t.Fatal("a refused page was stored")
	}
}

// TestMaxBytesClampedToFileSystem: a MaxBytes larger than the file system
// less MinFreeBytes is clamped to that.
func TestMaxBytesClampedToFileSystem(t *testing.T) {
	sys := newErrorFS().after(opFstatfs, func(c *sysCall, err error) {
		if err == nil {
			c.stat.Blocks, c.stat.Bavail, c.stat.Frsize, c.stat.Bsize = 1024, 1024, 4096, 4096
		}
	}).syscalls()
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MaxBytes: 1 << 40, MinFreeBytes: 1000, Syscalls: sys}, nil)
	if got, want := s.MaxBytes(), int64(1024*4096-1000); got != want {
		t.Fatalf("MaxBytes() = %d, want %d", got, want)
	}
	small := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MaxBytes: 5000, Syscalls: sys}, nil)
	if got := small.MaxBytes(); got != 5000 {
		t.Fatalf("MaxBytes() = %d, want 5000 unclamped", got)
	}
}

// TestWriteBelowMinFreeRefused: a page that would leave less than
// MinFreeBytes free, with nothing left to evict, is refused through both
// interfaces, as SGLang refuses a write whose free-space watermark it
// cannot meet.
func TestWriteBelowMinFreeRefused(t *testing.T) {
	sys := newErrorFS().after(opFstatfs, func(c *sysCall, err error) {
		if err == nil {
			c.stat.Blocks, c.stat.Bavail, c.stat.Frsize, c.stat.Bsize = 1<<20, 1, 1024, 1024 // 1 KiB free
		}
	}).syscalls()
	p, idx := randomPages(t, 1)
	page, _ := p.GetDataPage(idx[0])
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MinFreeBytes: int64(1024 - len(page) + 1), Syscalls: sys}, p)
	if err := s.Set("k", page); !errors.Is(err, ErrRefused) {
		t.Fatalf("Set = %v, want ErrRefused", err)
	}
	if ok, err := s.BatchSetV1([]string{"k"}, idx); err != nil || ok[0] {
		t.Fatalf("BatchSetV1 = %v, %v; want false, nil", ok, err)
	}
	roomy := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MinFreeBytes: int64(1024 - len(page)), Syscalls: sys}, p)
	if err := roomy.Set("k", page); err != nil {
		t.Fatalf("Set leaving exactly MinFreeBytes = %v", err)
	}
}
