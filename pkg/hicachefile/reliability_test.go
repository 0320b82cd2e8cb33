package hicachefile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
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
