//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFDLimitWhileLoadingNeverSilentMiss: running out of descriptors while loading
// the index of a batch file another store just wrote is never a silent
// miss, also for a key with '_', which has no old-format fallback to fail
// instead.
func TestFDLimitWhileLoadingNeverSilentMiss(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 2)
		dir := t.TempDir()
		var failing atomic.Bool // opens of existing files fail with EMFILE
		sys := newErrorFS().fail(opOpenat, func(c *sysCall) bool {
			return c.flags&unix.O_CREAT == 0 && failing.Load()
		}, unix.EMFILE).syscalls()
		r := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, Syscalls: sys}, p)
		r.Exists("warm-up")
		w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
		if ok, err := w.BatchSetV1([]string{"k_1"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		failing.Store(true)
		ok, err := r.BatchGetV1([]string{"k_1"}, idx[ps:])
		if err == nil && !ok[0] {
			t.Errorf("BatchGetV1(k_1) out of descriptors = %v, nil: a silent miss", ok)
		}
		failing.Store(false)
		if ok, err := r.BatchGetV1([]string{"k_1"}, idx[ps:]); err != nil || !ok[0] || !samePages(t, p, idx[0], idx[ps]) {
			t.Errorf("BatchGetV1(k_1) with descriptors back = %v, %v", ok, err)
		}
	})
}

// TestManyBatchFilesLowFDLimit: one BatchGetV1 over 10,000 batch files
// serves every page under ulimit -n 256: it never holds every file of the
// call open at once.
func TestManyBatchFilesLowFDLimit(t *testing.T) {
	const n = 10000
	cfg := mhaCfg
	cfg.Pages = 2 * n
	p := newPool(t, cfg)
	src, _ := p.Alloc(n * cfg.PageSize)
	dst, _ := p.Alloc(n * cfg.PageSize)
	fillRandom(t, p, src)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%05d", i)
	}
	dir := shmDir(t) // 10,000 file creations on tmpfs rather than disk
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	low := old
	low.Cur = 256
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &old) }()
	w := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes())}, p)
	if ok, err := w.BatchSetV1(keys, src); err != nil || !all(ok) {
		t.Fatalf("BatchSetV1 = %v", err)
	}
	for _, direct := range []bool{false, true} {
		r := newStore(t, Config{Dir: dir, ModelName: "m", DirectIO: direct}, p)
		ok, err := r.BatchGetV1(keys, dst)
		if err != nil {
			t.Fatalf("DirectIO %v: BatchGetV1 = %v", direct, err)
		}
		served := 0
		for i := range keys {
			if ok[i] {
				served++
				if !samePages(t, p, src[i*cfg.PageSize], dst[i*cfg.PageSize]) {
					t.Fatalf("page %d differs", i)
				}
			}
		}
		if served != n {
			t.Errorf("DirectIO %v: %d of %d pages served under ulimit -n 256; stats %+v", direct, served, n, r.Stats())
		}
	}
}

// TestFDLimitNeverSilentMiss: running out of descriptors is
// waited out, and when it lasts it is the call's error, not a false entry
// beside a nil error.
func TestFDLimitNeverSilentMiss(t *testing.T) {
	p, idx := randomPages(t, 2)
	ps := mhaCfg.PageSize
	dir := t.TempDir()
	w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	if ok, err := w.BatchSetV1([]string{"v"}, idx[:ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	page, _ := p.GetDataPage(idx[0])
	if err := w.Set("o", page); err != nil {
		t.Fatal(err)
	}
	var failing atomic.Int64 // EMFILE for this many opens
	sys := newErrorFS().fail(opOpenat, func(c *sysCall) bool {
		return c.flags&unix.O_CREAT == 0 && failing.Add(-1) >= 0
	}, unix.EMFILE).syscalls()
	r := newStore(t, Config{Dir: dir, ModelName: "m", Syscalls: sys}, p)
	r.Exists("v")
	for _, key := range []string{"v", "o"} {
		failing.Store(3) // brief: waited out
		if ok, err := r.BatchGetV1([]string{key}, idx[ps:]); err != nil || !ok[0] {
			t.Errorf("BatchGetV1(%s) with a brief EMFILE = %v, %v", key, ok, err)
		}
		failing.Store(1 << 30) // lasting: the call's error
		if ok, err := r.BatchGetV1([]string{key}, idx[ps:]); !errors.Is(err, unix.EMFILE) || ok[0] {
			t.Errorf("BatchGetV1(%s) with a lasting EMFILE = %v, %v; want the EMFILE", key, ok, err)
		}
	}
	failing.Store(1 << 30)
	if ok, err := r.BatchGet([]string{"o"}, [][]byte{make([]byte, len(page))}); !errors.Is(err, unix.EMFILE) || ok[0] {
		t.Errorf("BatchGet with a lasting EMFILE = %v, %v; want the EMFILE", ok, err)
	}
}
