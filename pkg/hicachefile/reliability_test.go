package hicachefile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

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
		var fd int
		if fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0); err == nil {
			err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
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
