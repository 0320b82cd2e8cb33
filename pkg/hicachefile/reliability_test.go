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
