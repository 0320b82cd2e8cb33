package hicachefile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"golang.org/x/sys/unix"
)

// Regression tests for the reliability cases of issue 7 and SGLang's
// defaults: each failed on the code before its fix.

// TestSGLangDirEnv: with Config.Dir empty, SGLang's own variable names the
// directory first, then HICACHE_FILE_DIR.
func TestSGLangDirEnv(t *testing.T) {
	t.Setenv("SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR", "/sglang/dir")
	t.Setenv("HICACHE_FILE_DIR", "/ours")
	if got := (Config{ModelName: "m"}).withDefaults().Dir; got != "/sglang/dir" {
		t.Errorf("Dir = %q, want SGLang's /sglang/dir", got)
	}
	t.Setenv("SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR", "")
	if got := (Config{ModelName: "m"}).withDefaults().Dir; got != "/ours" {
		t.Errorf("Dir = %q, want /ours", got)
	}
}

// TestEmptyModelName: SGLang names the files of an unnamed model
// "<key>__0_1.bin"; such a store opens and loads them.
func TestEmptyModelName(t *testing.T) {
	dir := t.TempDir()
	page := bytes.Repeat([]byte{7}, 64)
	if err := os.WriteFile(filepath.Join(dir, "abc__0_1.bin"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Config{Dir: dir}, nil)
	got := make([]byte, len(page))
	if err := s.Get("abc", got); err != nil || !bytes.Equal(got, page) {
		t.Fatalf("Get(abc) = %v", err)
	}
	p, idx := randomPages(t, 1)
	if err := s.RegisterMemPoolHost(p); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BatchSetV1([]string{"v"}, idx); err != nil || !ok[0] {
		t.Fatalf("BatchSetV1 = %v, %v", ok, err)
	}
}

// TestRegisterAfterClose: RegisterMemPoolHost on a closed store is
// ErrClosed, like every other call.
func TestRegisterAfterClose(t *testing.T) {
	p := newPool(t, mhaCfg)
	s, err := New(Config{Dir: t.TempDir(), ModelName: "m"})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := s.RegisterMemPoolHost(p); !errors.Is(err, ErrClosed) {
		t.Fatalf("RegisterMemPoolHost after Close = %v, want ErrClosed", err)
	}
}

// TestClearForgetsUnderscoreKeys (issue 7.1): a key holding '_' written
// through the old interface survived Clear, and was then served stale
// through both interfaces; SGLang's temp files of the store's names were
// left behind.
func TestClearForgetsUnderscoreKeys(t *testing.T) {
	p, idx := randomPages(t, 2)
	ps := mhaCfg.PageSize
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	before, _ := p.GetDataPage(idx[0])
	keys := []string{"req42_page_7", "old_key_1"}
	for _, k := range keys {
		if err := s.Set(k, before); err != nil {
			t.Fatal(err)
		}
	}
	sgTmp := filepath.Join(dir, "old_key_1_m_0_1.bin.tmp.4242.139872.0123456789abcdef0123456789abcdef")
	if err := os.WriteFile(sgTmp, before, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Clear(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sgTmp); !os.IsNotExist(err) {
		t.Errorf("SGLang's temp file survived Clear: %v", err)
	}
	for _, k := range keys {
		if s.Exists(k) {
			t.Errorf("Exists(%q) = true after Clear", k)
		}
	}
	// Written again with new bytes, both interfaces serve the new bytes.
	after, _ := p.GetDataPage(idx[ps])
	if err := s.Set(keys[0], after); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(after))
	if err := s.Get(keys[0], got); err != nil || !bytes.Equal(got, after) {
		t.Errorf("Get(%q) after Clear and Set = %v, stale %v", keys[0], err, bytes.Equal(got, before))
	}
	if ok, err := s.BatchSetV1(keys[1:], idx[ps:]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	dst, _ := p.Alloc(ps)
	if ok, err := s.BatchGetV1(keys[1:], dst); err != nil || !ok[0] {
		t.Fatalf("BatchGetV1 = %v, %v", ok, err)
	}
	if !samePages(t, p, dst[0], idx[ps]) {
		t.Errorf("BatchGetV1(%q) after Clear served the page from before it", keys[1])
	}
}

// TestWrongSizedOldFile (issue 7.3): a 0-byte, 7-byte or one-byte-too-long
// old-format file counted as stored, made every write skip the key, and
// missed forever after.
func TestWrongSizedOldFile(t *testing.T) {
	for _, size := range []func(n int) int{
		func(int) int { return 0 },
		func(int) int { return 7 },
		func(n int) int { return n + 1 },
	} {
		p, idx := randomPages(t, 1)
		ps := mhaCfg.PageSize
		page, _ := p.GetDataPage(idx[0])
		n := size(len(page))
		s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
		for _, k := range []string{"set", "batchset", "v1"} {
			if err := os.WriteFile(s.FilePath(k), make([]byte, n), 0o644); err != nil {
				t.Fatal(err)
			}
			if s.Exists(k) || s.BatchExists([]string{k}) != 0 {
				t.Errorf("%d-byte file: Exists(%q) = true", n, k)
			}
		}
		if err := s.Set("set", page); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.BatchSet([]string{"batchset"}, [][]byte{page}); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if ok, err := s.BatchSetV1([]string{"v1"}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		for _, k := range []string{"set", "batchset"} {
			got := make([]byte, len(page))
			if err := s.Get(k, got); err != nil || !bytes.Equal(got, page) {
				t.Errorf("%d-byte file: Get(%q) after writing = %v", n, k, err)
			}
		}
		dst, _ := p.Alloc(ps)
		if ok, err := s.BatchGetV1([]string{"v1"}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[0]) {
			t.Errorf("%d-byte file: BatchGetV1(v1) after BatchSetV1 = %v, %v", n, ok, err)
		}
	}
}

// TestAmbiguousOldNamesStayOffV1 (issue 7.2): BatchGetV1(["k_x"]) of model
// "m" served model "x_m"'s page of key "k" from the old-format fallback,
// and BatchSetV1(["k_x"]) reported true without writing, because that file
// existed.
func TestAmbiguousOldNamesStayOffV1(t *testing.T) {
	p, idx := randomPages(t, 2)
	ps := mhaCfg.PageSize
	dir := t.TempDir()
	m := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	xm := newStore(t, Config{Dir: dir, ModelName: "x_m"}, p)
	theirs, _ := p.GetDataPage(idx[0])
	if err := xm.Set("k", theirs); err != nil {
		t.Fatal(err)
	}
	if m.FilePath("k_x") != xm.FilePath("k") {
		t.Fatalf("setup: %s and %s differ", m.FilePath("k_x"), xm.FilePath("k"))
	}
	dst, _ := p.Alloc(ps)
	if ok, err := m.BatchGetV1([]string{"k_x"}, dst); err != nil || ok[0] {
		t.Errorf("BatchGetV1(k_x) = %v, %v: served x_m's page of k", ok, err)
	}
	before := m.Stats().Sets
	if ok, err := m.BatchSetV1([]string{"k_x"}, idx[ps:]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if m.Stats().Sets == before {
		t.Errorf("BatchSetV1(k_x) reported true without writing")
	}
	if ok, err := m.BatchGetV1([]string{"k_x"}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[ps]) {
		t.Errorf("BatchGetV1(k_x) after BatchSetV1 = %v, %v, or not its page", ok, err)
	}
	// A plain SGLang key still loads from its old-format file.
	if err := m.Set("abc123", theirs); err != nil {
		t.Fatal(err)
	}
	if ok, err := m.BatchGetV1([]string{"abc123"}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[0]) {
		t.Errorf("BatchGetV1(abc123) of an old-format file = %v, %v", ok, err)
	}
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
// device. It reports false for a kind this process may not make.
func plant(t *testing.T, kind, path string, size int) bool {
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
		if err = unix.Mknod(path, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))); err == unix.EPERM {
			return false // /dev/null's numbers; needs CAP_MKNOD
		}
	}
	if err != nil {
		t.Fatalf("plant %s at %s: %v", kind, path, err)
	}
	return true
}

// TestSpecialFilesNeverBlock (issue 7.4): a FIFO named like one of the
// store's files hung Get, BatchGet, BatchGetV1 (old-format fallback and
// batch file), New over a directory holding one, and then Close. Every
// special file under a store name is a miss, counted in Stats, and Clear
// removes it without opening it.
func TestSpecialFilesNeverBlock(t *testing.T) {
	for _, kind := range []string{"fifo", "symlink", "dir", "socket", "device"} {
		t.Run(kind, func(t *testing.T) {
			p, idx := randomPages(t, 2)
			ps := mhaCfg.PageSize
			dir := t.TempDir()
			w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
			if ok, err := w.BatchSetV1([]string{"v"}, idx[:ps]); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
			loc, _ := w.Locate("v")
			if err := os.Remove(loc.Path); err != nil {
				t.Fatal(err)
			}
			pb := p.PageBytes()
			if !plant(t, kind, loc.Path, 0) {
				t.Logf("cannot make a %s here; the other kinds cover the rest", kind)
				return
			}
			plant(t, kind, w.FilePath("o"), pb)
			// A batch file name another process planted before the store
			// opened.
			plant(t, kind, filepath.Join(w.v1Dir, "b0123456789abcdef_m_0_1.batch.bin"), pb)

			var s *Store
			within(t, "New", func() { s = newStore(t, Config{Dir: dir, ModelName: "m"}, p) })
			page := make([]byte, pb)
			within(t, "Get", func() {
				if err := s.Get("o", page); !errors.Is(err, ErrNotFound) {
					t.Errorf("Get(o) = %v, want ErrNotFound", err)
				}
			})
			within(t, "BatchGet", func() {
				if ok, err := s.BatchGet([]string{"o"}, [][]byte{page}); err != nil || ok[0] {
					t.Errorf("BatchGet(o) = %v, %v", ok, err)
				}
			})
			dst, _ := p.Alloc(2 * ps)
			for _, st := range []*Store{w, s} {
				within(t, "BatchGetV1", func() {
					if ok, err := st.BatchGetV1([]string{"o", "v"}, dst); err != nil || ok[0] || ok[1] {
						t.Errorf("BatchGetV1(o, v) = %v, %v", ok, err)
					}
				})
				if st.Exists("o") {
					t.Errorf("Exists(o) = true for a %s", kind)
				}
			}
			if n := s.Stats().SpecialFiles; n < 3 {
				t.Errorf("Stats.SpecialFiles = %d, want at least 3", n)
			}
			within(t, "Clear", func() {
				if err := s.Clear(); err != nil {
					t.Errorf("Clear = %v", err)
				}
			})
			for _, path := range []string{loc.Path, w.FilePath("o"), filepath.Join(w.v1Dir, "b0123456789abcdef_m_0_1.batch.bin")} {
				if _, err := os.Lstat(path); !os.IsNotExist(err) {
					t.Errorf("Clear left %s: %v", path, err)
				}
			}
			within(t, "Close", func() { _ = s.Close() })
		})
	}
}

// TestForeignIdentityNeverServed (issue 7.6): a batch file of the same page
// shape written by another model or another TP rank, renamed in place of
// one of ours, was served by a fresh store.
func TestForeignIdentityNeverServed(t *testing.T) {
	ours := Config{ModelName: "m", TPRank: 0, TPSize: 2}
	for _, other := range []Config{
		{ModelName: "m", TPRank: 1, TPSize: 2},
		{ModelName: "x", TPRank: 0, TPSize: 2},
		{ModelName: "m", TPRank: 0, TPSize: 2, PPRank: 1, PPSize: 2},
		{ModelName: "m", IsMLA: true},
	} {
		p, idx := randomPages(t, 2)
		ps := mhaCfg.PageSize
		dir := t.TempDir()
		ours.Dir, other.Dir = dir, dir
		live := newStore(t, ours, p)
		if ok, err := live.BatchSetV1([]string{"mine"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		o := newStore(t, other, p)
		if ok, err := o.BatchSetV1([]string{"k"}, idx[ps:]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		loc, _ := o.Locate("k")
		planted := filepath.Join(live.v1Dir, "b0123456789abcdef"+live.suffix+batchExt)
		if err := os.Rename(loc.Path, planted); err != nil {
			t.Fatal(err)
		}
		fresh := newStore(t, ours, p)
		for name, s := range map[string]*Store{"live": live, "fresh": fresh} {
			dst, _ := p.Alloc(ps)
			ok, err := s.BatchGetV1([]string{"k"}, dst)
			if err != nil || ok[0] {
				t.Errorf("%s store of %s: BatchGetV1 of %s's file = %v, %v", name, live.suffix, o.suffix, ok, err)
			}
			if s.Exists("k") {
				t.Errorf("%s store of %s: Exists(k) of %s's file", name, live.suffix, o.suffix)
			}
			if s.Stats().Mismatch == 0 {
				t.Errorf("%s store: Stats.Mismatch = 0", name)
			}
			_ = p.Free(dst)
		}
	}
}

// TestMLAIdentityAcrossTPRanks: MLA KV is the same on every TP rank, so an
// MLA store serves the pages another TP rank of the same model wrote.
func TestMLAIdentityAcrossTPRanks(t *testing.T) {
	p, idx := randomPages(t, 1)
	dir := t.TempDir()
	w := newStore(t, Config{Dir: dir, ModelName: "m", IsMLA: true, TPRank: 1, TPSize: 4}, p)
	if ok, err := w.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	r := newStore(t, Config{Dir: dir, ModelName: "m", IsMLA: true, TPRank: 0, TPSize: 2}, p)
	dst, _ := p.Alloc(mhaCfg.PageSize)
	if ok, err := r.BatchGetV1([]string{"k"}, dst); err != nil || !ok[0] {
		t.Fatalf("BatchGetV1 of another TP rank's MLA page = %v, %v", ok, err)
	}
}

// TestOlderFormatSkipped: a batch file of format version 1 (no identity) is
// skipped, never served.
func TestOlderFormatSkipped(t *testing.T) {
	p, idx := randomPages(t, 1)
	dir := t.TempDir()
	w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	if ok, err := w.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	loc, _ := w.Locate("k")
	data, err := os.ReadFile(loc.Path)
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite it as version 1 wrote it: the index, then a 48-byte trailer
	// with the pool fingerprint and no identity.
	tr := data[len(data)-trailerSize:]
	indexOff, indexLen := binary.LittleEndian.Uint64(tr[16:]), binary.LittleEndian.Uint64(tr[24:])
	v1 := append([]byte(nil), data[:indexOff+indexLen]...)
	t1 := len(v1)
	v1 = append(v1, batchfile.Magic...)
	v1 = binary.LittleEndian.AppendUint32(v1, 1)
	v1 = append(v1, tr[12:44]...) // count, indexOff, indexLen, indexCRC, fp
	v1 = binary.LittleEndian.AppendUint32(v1, crc32.Checksum(v1[t1:], castagnoli))
	if err := os.WriteFile(loc.Path, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	r := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	dst, _ := p.Alloc(mhaCfg.PageSize)
	if ok, err := r.BatchGetV1([]string{"k"}, dst); err != nil || ok[0] {
		t.Errorf("BatchGetV1 of a version-1 file = %v, %v", ok, err)
	}
	if st := r.Stats(); st.SkippedFiles != 1 {
		t.Errorf("Stats.SkippedFiles = %d, want 1", st.SkippedFiles)
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

// TestDirReplacedOldInterface (issue 7.8): after rm -rf Dir under a live
// store every old-format write failed forever, and after mv Dir Dir.old;
// mkdir Dir, Set wrote into Dir.old. Writes through either interface must
// land at the path Dir.
func TestDirReplacedOldInterface(t *testing.T) {
	for _, how := range []string{"removed", "moved"} {
		t.Run(how, func(t *testing.T) {
			bothModes(t, func(t *testing.T, noWatch bool) {
				p, idx := randomPages(t, 2)
				ps := mhaCfg.PageSize
				dir := filepath.Join(t.TempDir(), "store")
				s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, MaxBytes: 1 << 30}, p)
				page, _ := p.GetDataPage(idx[0])
				if err := s.Set("before", page); err != nil {
					t.Fatal(err)
				}
				var err error
				if how == "removed" {
					err = os.RemoveAll(dir)
				} else if err = os.Rename(dir, dir+".old"); err == nil {
					err = os.Mkdir(dir, 0o755)
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Set("k", page); err != nil {
					t.Fatalf("Set after the directory was %s: %v", how, err)
				}
				if ok, err := s.BatchSet([]string{"k2"}, [][]byte{page}); err != nil || !ok[0] {
					t.Fatalf("BatchSet after the directory was %s: %v, %v", how, ok, err)
				}
				if ok, err := s.BatchSetV1([]string{"v"}, idx[ps:]); err != nil || !ok[0] {
					t.Fatalf("BatchSetV1 after the directory was %s: %v, %v", how, ok, err)
				}
				for _, name := range []string{s.oldName("k"), s.oldName("k2")} {
					if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
						t.Errorf("%s is not at the path Dir: %v", name, err)
					}
				}
				if files, _ := filepath.Glob(filepath.Join(s.v1Dir, "*"+batchExt)); len(files) != 1 {
					t.Errorf("%d batch files at the path Dir, want 1", len(files))
				}
				if how == "moved" {
					if _, err := os.Stat(filepath.Join(dir+".old", s.oldName("k"))); err == nil {
						t.Errorf("Set wrote into the moved directory")
					}
				}
			})
		})
	}
}

// TestRetiredDirsClosed (issue 7.8): each removal of the V1 directory kept
// one more descriptor open until Close.
// With inotify each removal costs the kernel a few milliseconds to drop the
// watch, so that mode runs fewer.
func TestRetiredDirsClosed(t *testing.T) { bothModes(t, testRetiredDirsClosed) }

func testRetiredDirsClosed(t *testing.T, noWatch bool) {
	n := 1000
	if !noWatch {
		n = 100
	}
	p, idx := randomPages(t, 1)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", NoWatch: noWatch}, p)
	if ok, err := s.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	s.Exists("warm-up")
	before := openFDs(t)
	for i := range n {
		if err := os.RemoveAll(s.v1Dir); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	if after := openFDs(t); after > before+8 {
		t.Errorf("%d descriptors open after %d removals of the V1 directory, %d before", after, n, before)
	}
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

// TestManyBatchFilesLowFDLimit (issue 7.9): BatchGetV1 opened every batch
// file of the call at once; under a low descriptor limit most pages missed
// with a nil error. One call over 10,000 batch files must work under
// ulimit -n 256.
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

// TestFDLimitNeverSilentMiss (issue 7.9): running out of descriptors is
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
	sys := Syscalls{Openat: func(d int, path string, fl int, m uint32) (int, error) {
		if fl&unix.O_CREAT == 0 && failing.Add(-1) >= 0 {
			return -1, unix.EMFILE
		}
		return unix.Openat(d, path, fl, m)
	}}
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

// TestDeadWritersTempsReclaimed (issue 7.5): crashed writers' temp files
// were never removed but by Clear, and stood outside MaxBytes. A new store
// removes dead writers' temp files of its suffix, in Dir and in its V1
// directory, and leaves live writers' and other suffixes'.
func TestDeadWritersTempsReclaimed(t *testing.T) {
	dir := t.TempDir()
	s0 := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	const tok = "0123456789abcdef"
	dead := []string{
		filepath.Join(dir, ".a"+tok[1:]+"-"+s0.digest+"_m_0_1.tmp"),
		filepath.Join(s0.v1Dir, ".b"+tok[1:]+"-"+s0.digest+"_m_0_1.tmp"),
		filepath.Join(dir, "abc_m_0_1.bin.tmp.4242.1398.0123456789abcdef0123456789abcdef"), // SGLang's, old
	}
	live := []string{
		filepath.Join(dir, ".c"+tok[1:]+"-"+s0.digest+"_m_0_1.tmp"),
		filepath.Join(s0.v1Dir, ".d"+tok[1:]+"-"+s0.digest+"_m_0_1.tmp"),
	}
	young := []string{
		filepath.Join(dir, "abd_m_0_1.bin.tmp.4242.1398.0123456789abcdef0123456789abcdef"), // SGLang's, being written
	}
	others := []string{filepath.Join(dir, ".f"+tok[1:]+"_x_m_0_1.tmp")} // another model's
	for _, p := range dead {
		writeTempFile(t, p, 100, time.Hour, false)
	}
	// A writer that died just now, or one between its create and its lock:
	// its temp file stays until it is a second old.
	justDied := filepath.Join(s0.v1Dir, ".e"+tok[1:]+"-"+s0.digest+"_m_0_1.tmp")
	writeTempFile(t, justDied, 100, 0, false)
	for _, p := range live {
		writeTempFile(t, p, 100, time.Hour, true)
	}
	for _, p := range young {
		writeTempFile(t, p, 100, 0, false)
	}
	for _, p := range others {
		writeTempFile(t, p, 100, time.Hour, false)
	}
	s := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	for _, p := range dead {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("dead writer's %s survived New: %v", filepath.Base(p), err)
		}
	}
	for _, p := range append(append(live, young...), others...) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("New removed %s: %v", filepath.Base(p), err)
		}
	}
	if n := s.Stats().ReclaimedTemps; n != int64(len(dead)) {
		t.Errorf("Stats.ReclaimedTemps = %d, want %d", n, len(dead))
	}
	if _, err := os.Stat(justDied); err != nil {
		t.Errorf("New removed a temp file younger than a second: %v", err)
	}
	old := time.Now().Add(-2 * tempGrace)
	if err := os.Chtimes(justDied, old, old); err != nil {
		t.Fatal(err)
	}
	if err := s.reclaimTemps(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(justDied); !os.IsNotExist(err) {
		t.Errorf("a dead writer's temp file a second old survived a reclaim: %v", err)
	}
}

// TestTempsDuringEviction (issue 7.5): eviction reclaims dead writers' temp
// files, and live writers' temp files count toward MaxBytes.
func TestTempsDuringEviction(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 5)
	file := oneKeyFile(p.PageBytes())
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes()), MaxBytes: 4 * file, EvictionRatio: 1}, p)
	deadTmp := filepath.Join(s.v1Dir, ".0123456789abcdef-"+s.digest+"_m_0_1.tmp")
	liveTmp := filepath.Join(s.v1Dir, ".1123456789abcdef-"+s.digest+"_m_0_1.tmp")
	writeTempFile(t, deadTmp, int(file), time.Hour, false)
	writeTempFile(t, liveTmp, int(2*file), time.Hour, true)
	for i := range 5 {
		if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx[i*ps:(i+1)*ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	if _, err := os.Stat(deadTmp); !os.IsNotExist(err) {
		t.Errorf("eviction left the dead writer's temp file: %v", err)
	}
	if _, err := os.Stat(liveTmp); err != nil {
		t.Errorf("eviction removed the live writer's temp file: %v", err)
	}
	// The live temp file takes two files' room of four.
	if n := batchFileCount(t, s); n != 2 {
		t.Errorf("%d batch files, want 2: the live temp file must count toward MaxBytes", n)
	}
}

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

func (d *smallDisk) syscalls() Syscalls {
	return Syscalls{
		Pwritev: func(fd int, iovs [][]byte, off int64) (int, error) {
			n := int64(0)
			for _, b := range iovs {
				n += int64(len(b))
			}
			if d.used()+n > d.capacity {
				return 0, unix.ENOSPC
			}
			return unix.Pwritev(fd, iovs, off)
		},
		Fstatfs: func(fd int, st *unix.Statfs_t) error {
			*st = unix.Statfs_t{Bsize: 1, Bavail: uint64(max(0, d.capacity-d.used()))}
			return nil
		},
	}
}

// TestFullDiskMakesRoom (issue 7.7): with MaxBytes above what the disk
// could hold, writes failed with ENOSPC in a row and nothing was evicted,
// although the store held files of its own. With MaxBytes or MinFreeBytes
// set, a write that meets a full disk evicts and tries again; with neither,
// ENOSPC is returned as before.
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

// TestMinFreeBytes: eviction keeps the file system's free space at or
// above Config.MinFreeBytes.
func TestMinFreeBytes(t *testing.T) {
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

// TestNoSpaceReportedOnce (issue 7.7): two IO workers that both met ENOSPC
// reported it twice, as two identical joined lines.
func TestNoSpaceReportedOnce(t *testing.T) {
	cfg := mhaCfg
	cfg.Pages = 4096 // 3 MiB of 768-byte pages: one file, split between two workers
	p := newPool(t, cfg)
	idx, _ := p.Alloc(cfg.Pages * cfg.PageSize)
	keys := make([]string, cfg.Pages)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	sys := Syscalls{Pwritev: func(int, [][]byte, int64) (int, error) { return 0, unix.ENOSPC }}
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", IOWorkers: 2, Syscalls: sys}, p)
	_, err := s.BatchSetV1(keys, idx)
	if n := strings.Count(fmt.Sprint(err), unix.ENOSPC.Error()); n != 1 {
		t.Errorf("error %q reports ENOSPC %d times, want once", err, n)
	}
}

// TestReclaimRacesWriter: where O_TMPFILE is refused, a reclaim that runs
// between a writer's create and its lock removes the temp file, or holds it
// while the writer tries to lock it. The writer must notice and write the file again: no write fails
// and no page is lost.
func TestReclaimRacesWriter(t *testing.T) {
	for _, how := range []string{"removed before the lock", "held during the lock"} {
		t.Run(how, func(t *testing.T) {
			p, idx := randomPages(t, 2)
			ps := mhaCfg.PageSize
			dir := t.TempDir()
			var reclaimer *Store
			var armed atomic.Bool
			// Where O_TMPFILE is refused, temp files are made by name and
			// then locked: the window this test is about.
			sys := Syscalls{Openat: refuseTmpfile, FcntlFlock: func(fd uintptr, cmd int, lk *unix.Flock_t) error {
				if cmd == unix.F_OFD_SETLK && lk.Type == unix.F_WRLCK && armed.Swap(false) {
					if how == "removed before the lock" {
						// As if the writer had waited past tempGrace for a CPU.
						path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
						if err != nil {
							t.Fatal(err)
						}
						old := time.Now().Add(-2 * tempGrace)
						if err := os.Chtimes(path, old, old); err != nil {
							t.Fatal(err)
						}
						if err := reclaimer.reclaimTemps(); err != nil {
							t.Error(err)
						}
						if _, err := os.Stat(path); !os.IsNotExist(err) {
							t.Fatalf("setup: the reclaim left the unlocked temp file: %v", err)
						}
					} else {
						// Lock it as a reclaim does, through another open
						// file description, for the writer's attempt.
						rfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
						if err != nil {
							t.Fatal(err)
						}
						defer unix.Close(rfd)
						rl := unix.Flock_t{Type: unix.F_RDLCK}
						if err := unix.FcntlFlock(uintptr(rfd), unix.F_OFD_SETLK, &rl); err != nil {
							t.Fatal(err)
						}
						// ... and removes it before letting go.
						path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
						if err != nil {
							t.Fatal(err)
						}
						defer os.Remove(path)
					}
				}
				return unix.FcntlFlock(fd, cmd, lk)
			}}
			s := newStore(t, Config{Dir: dir, ModelName: "m", Syscalls: sys}, p)
			reclaimer = newStore(t, Config{Dir: dir, ModelName: "m"}, p)
			page, _ := p.GetDataPage(idx[0])
			armed.Store(true)
			if err := s.Set("o", page); err != nil {
				t.Fatalf("Set = %v", err)
			}
			if armed.Swap(true) {
				t.Fatal("setup: Set took no lock")
			}
			if ok, err := s.BatchSetV1([]string{"v"}, idx[ps:]); err != nil || !ok[0] {
				t.Fatalf("BatchSetV1 = %v, %v", ok, err)
			}
			if armed.Load() {
				t.Fatal("setup: BatchSetV1 took no lock")
			}
			got := make([]byte, len(page))
			if err := s.Get("o", got); err != nil || !bytes.Equal(got, page) {
				t.Errorf("Get(o) = %v", err)
			}
			dst, _ := p.Alloc(ps)
			if ok, err := reclaimer.BatchGetV1([]string{"v"}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[ps]) {
				t.Errorf("BatchGetV1(v) = %v, %v", ok, err)
			}
			if left := tempFiles(t, dir); len(left) > 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

// TestReclaimNeverFailsLiveWriter: a store that reclaims temp files over
// and over, beside a store that writes through both interfaces, never makes
// a write fail.
func TestReclaimNeverFailsLiveWriter(t *testing.T) {
	p, idx := randomPages(t, 4)
	dir := t.TempDir()
	w := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes())}, p)
	r := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			_ = r.reclaimTemps()
		}
	}()
	for n := 0; n < 300; n++ {
		keys := []string{fmt.Sprint("a", n), fmt.Sprint("b", n), fmt.Sprint("c", n), fmt.Sprint("d", n)}
		if ok, err := w.BatchSetV1(keys, idx); err != nil || !all(ok) {
			t.Errorf("BatchSetV1 beside a reclaim = %v, %v", ok, err)
		}
		if err := w.Set(fmt.Sprint("o", n), make([]byte, 10)); err != nil {
			t.Errorf("Set beside a reclaim = %v", err)
		}
	}
	stop.Store(true)
	<-done
	if n := r.Stats().ReclaimedTemps; n != 0 {
		t.Errorf("a reclaim removed %d live writers' temp files", n)
	}
}

// TestForeignRenamedOverOwnFile (issue 7.6): another rank's or model's batch
// file of the same keys and page shape, renamed over a file the live store
// had indexed, passed every per-page check (its keys, offsets and CRCs are
// its own) and was served by the live store. Its trailer differs, and the
// read now compares it with the one indexed.
func TestForeignRenamedOverOwnFile(t *testing.T) {
	ours := Config{ModelName: "m", TPRank: 0, TPSize: 2}
	for _, other := range []Config{
		{ModelName: "m", TPRank: 1, TPSize: 2},
		{ModelName: "x", TPRank: 0, TPSize: 2},
	} {
		p, idx := randomPages(t, 3)
		ps := mhaCfg.PageSize
		dir := t.TempDir()
		ours.Dir, other.Dir = dir, dir
		live := newStore(t, ours, p)
		if ok, err := live.BatchSetV1([]string{"k"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		o := newStore(t, other, p)
		if ok, err := o.BatchSetV1([]string{"k"}, idx[ps:2*ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		mine, _ := live.Locate("k")
		theirs, _ := o.Locate("k")
		if err := os.Rename(theirs.Path, mine.Path); err != nil {
			t.Fatal(err)
		}
		before := live.Stats().Mismatch
		ok, err := live.BatchGetV1([]string{"k"}, idx[2*ps:])
		if err != nil || ok[0] {
			t.Errorf("live store of %s served %s's file renamed over its own: %v, %v", live.suffix, o.suffix, ok, err)
		}
		if live.Stats().Mismatch == before {
			t.Errorf("live store: Stats.Mismatch did not count %s's file", o.suffix)
		}
	}
}
