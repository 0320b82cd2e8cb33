//go:build linux

package hicachefile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLegacyV1DirAdopted: batch files in the V1 directory of the earlier
// naming (v1 + suffix, shared by suffix twins) are moved by the store of
// their identity into its own and served; the twin's stay for it; files
// that fail their checks and dead writers' temp files go; the directory
// goes once empty; and Clear removes the store's files still there.
func TestLegacyV1DirAdopted(t *testing.T) {
	ps := mhaCfg.PageSize
	tw := suffixTwins[1] // MHA "m" on TP 0 of 1, MLA "m_0_1"
	p, idx := randomPages(t, 4)
	dir := t.TempDir()
	a, b := tw.a, tw.b
	a.Dir, b.Dir = dir, dir
	legacy := filepath.Join(dir, "v1"+a.withDefaults().suffix())
	// Write through stores of the current naming, then move their files
	// to the legacy directory, as the earlier naming kept them.
	toLegacy := func(cfg Config, keys ...string) {
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterMemPoolHost(p); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			i := int(k[1] - '0')
			if ok, err := s.BatchSetV1([]string{k}, idx[i*ps:(i+1)*ps]); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
		}
		if err := os.MkdirAll(legacy, 0o755); err != nil { // New removed it, empty
			t.Fatal(err)
		}
		files, _ := filepath.Glob(filepath.Join(s.v1Dir, "*"+batchExt))
		for _, f := range files {
			if err := os.Rename(f, filepath.Join(legacy, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
		}
		_ = s.Close()
		_ = os.Remove(s.v1Dir)
	}
	toLegacy(a, "a0", "a1")
	toLegacy(b, "b2")
	sfx := a.withDefaults().suffix()
	bad := filepath.Join(legacy, "b0123456789abcdef"+sfx+batchExt)
	if err := os.WriteFile(bad, []byte("not a batch file"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadTmp := filepath.Join(legacy, ".l0123456789abcdef"+sfx+tmpExt)
	liveTmp := filepath.Join(dir, ".l1123456789abcdef"+sfx+tmpExt)
	writeTempFile(t, deadTmp, 100, 0, false)
	writeTempFile(t, liveTmp, 1<<20, time.Hour, true)

	sa := newStore(t, Config{Dir: dir, ModelName: a.ModelName, MaxBytes: 1 << 30}, p)
	if ok, err := sa.BatchGetV1([]string{"a0", "a1"}, idx[2*ps:4*ps]); err != nil || !all(ok) {
		t.Fatalf("a's legacy pages after New: %v, %v", ok, err)
	}
	if !samePages(t, p, idx[0], idx[2*ps]) {
		t.Error("a's legacy page read back wrong")
	}
	if n := batchFileCount(t, sa); n != 2 {
		t.Errorf("a's V1 directory holds %d batch files, want 2", n)
	}
	left, _ := filepath.Glob(filepath.Join(legacy, "*"))
	if len(left) != 1 || filepath.Base(left[0]) == filepath.Base(bad) {
		t.Errorf("legacy directory after a's New: %v, want b's one file", left)
	}
	if _, err := os.Stat(liveTmp); err != nil {
		t.Errorf("a live legacy temp file: %v", err)
	}
	if n := lruBytes(sa); n != 2*oneKeyFile(p.PageBytes()) {
		_ = sa.reclaimTemps()
		t.Errorf("a counts %d bytes, want its 2 files' %d (not the live legacy temp file)", n, 2*oneKeyFile(p.PageBytes()))
	}
	_ = sa.reclaimTemps()
	if n := lruBytes(sa); n != 2*oneKeyFile(p.PageBytes()) {
		t.Errorf("after a reclaim, a counts %d bytes, want %d", n, 2*oneKeyFile(p.PageBytes()))
	}

	// Clear takes a's files still in the legacy directory, not b's.
	if err := os.Rename(mustGlob(t, sa.v1Dir)[0], filepath.Join(legacy, "b1123456789abcdef"+sfx+batchExt)); err != nil {
		t.Fatal(err)
	}
	if err := sa.Clear(); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(legacy, "*")); len(left) != 1 {
		t.Errorf("legacy directory after a's Clear: %v, want b's one file", left)
	}

	sb := newStore(t, b, p)
	if ok, err := sb.BatchGetV1([]string{"b2"}, idx[3*ps:4*ps]); err != nil || !ok[0] {
		t.Errorf("b's legacy page after New: %v, %v", ok, err)
	}
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Errorf("the empty legacy directory stays: %v", err)
	}
}

// mustGlob lists the batch files in dir.
func mustGlob(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"+batchExt))
	if err != nil || len(files) == 0 {
		t.Fatalf("no batch file in %s: %v", dir, err)
	}
	return files
}
