//go:build linux

package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFutureDatedFilesRankAsNow: files the store never used rank by their
// modification time clamped to now, so three dated a year ahead go before
// any of the ten the store has just written.
func TestFutureDatedFilesRankAsNow(t *testing.T) {
	p, idx := randomPages(t, 1)
	page, err := p.GetDataPage(idx[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ahead := time.Now().AddDate(1, 0, 0)
	var future []string
	for i := range 3 {
		path := filepath.Join(dir, fmt.Sprintf("future%d_m_0_1.bin", i))
		if err := os.WriteFile(path, page, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, ahead, ahead); err != nil {
			t.Fatal(err)
		}
		future = append(future, path)
	}
	s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBytes: 10 * int64(len(page)), EvictionRatio: 1}, nil)
	for i := range 10 {
		if err := s.Set(fmt.Sprint("recent", i), page); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if !s.Exists(fmt.Sprint("recent", i)) {
			t.Errorf("recent%d was evicted while files dated ahead stayed", i)
		}
	}
	for _, path := range future {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s, dated a year ahead, outlived the store's recent files: %v", filepath.Base(path), err)
		}
	}
}

// TestFutureDatedDeadTempReclaimed: a dead writer's temp file dated a year
// ahead, larger than MaxBytes, is reclaimed like any dead one, and neither
// counts as live nor makes writes evict the store's pages.
func TestFutureDatedDeadTempReclaimed(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 6)
	dir := t.TempDir()
	cfg := Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes()), MaxBytes: 6 * oneKeyFile(p.PageBytes())}
	digest := cfg.withDefaults().identityDigest()
	dead := []string{
		filepath.Join(dir, ".0123456789abcdef-"+digest+"_m_0_1.tmp"),
		filepath.Join(dir, lockedTmpPrefix+"1123456789abcdef-"+digest+"_m_0_1.tmp"),
	}
	for _, path := range dead {
		writeTempFile(t, path, int(2*cfg.MaxBytes), -365*24*time.Hour, false)
	}
	// A temp file made by name keeps a grace after its last change, which
	// its future mtime does not push back.
	time.Sleep(tempGrace + 100*time.Millisecond)
	s := newStore(t, cfg, p)
	for _, path := range dead {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("dead temp file %s dated ahead survived New: %v", filepath.Base(path), err)
		}
	}
	for i := range 6 {
		if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx[i*ps:(i+1)*ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	if n := s.BatchExists([]string{"k0", "k1", "k2", "k3", "k4", "k5"}); n != 6 {
		t.Errorf("%d of 6 pages still served", n)
	}
	if st := s.Stats(); st.Evicted != 0 {
		t.Errorf("Stats.Evicted = %d, want 0", st.Evicted)
	}
}

// TestFutureDatedSGLangTempReclaimed: SGLang's temp files carry no lock and
// go once staleTempAge old; one dated ahead goes that long after its last
// change (its ctime, which no one can set), not a year later.
func TestFutureDatedSGLangTempReclaimed(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	name := "abc_m_0_1.bin.tmp.4242.1398.0123456789abcdef0123456789abcdef"
	writeTempFile(t, filepath.Join(dir, name), 100, -365*24*time.Hour, false)
	if removed, _ := s.reclaimOne(s.topfd(), name, true, time.Now()); removed {
		t.Fatal("a fresh SGLang temp file was reclaimed")
	}
	if removed, _ := s.reclaimOne(s.topfd(), name, true, time.Now().Add(staleTempAge+time.Minute)); !removed {
		t.Error("an SGLang temp file dated ahead survived a reclaim staleTempAge after its last change")
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, name), &st); err != unix.ENOENT {
		t.Errorf("the file is still there: %v", err)
	}
}
