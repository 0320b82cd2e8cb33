//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestEvictLRU: with room for three one-page batch files, a fourth write
// removes the least recently used file; a read hit counts as a use.
func TestEvictLRU(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 5)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes()),
		MaxBytes: 3 * oneKeyFile(p.PageBytes()), EvictionRatio: 1}, p)
	for i := range 3 {
		if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx[i*ps:(i+1)*ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	if ok, err := s.BatchGetV1([]string{"k0"}, idx[4*ps:]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if ok, err := s.BatchSetV1([]string{"k3"}, idx[3*ps:4*ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if got := s.BatchExists([]string{"k0", "k2", "k3"}); got != 3 {
		t.Fatalf("BatchExists(k0, k2, k3) = %d, want 3", got)
	}
	if s.Exists("k1") {
		t.Fatal("k1, the least recently used, was not evicted")
	}
	if ok, _ := s.BatchGetV1([]string{"k1"}, idx[4*ps:]); ok[0] {
		t.Fatal("an evicted page was served")
	}
	if n := batchFileCount(t, s); n != 3 {
		t.Fatalf("%d batch files on disk, want 3", n)
	}
	if st := s.Stats(); st.Evicted != 1 || st.EvictedBytes != oneKeyFile(p.PageBytes()) {
		t.Fatalf("Stats = %+v, want one file evicted", st)
	}
}

// TestEvictSkipsUndeletable: a file that cannot be removed never wedges
// eviction: the next least recently used file goes instead, and writes go
// on succeeding.
func TestEvictSkipsUndeletable(t *testing.T) {
	p, idx := randomPages(t, 1)
	var stuck string
	sys := newErrorFS().fail(opUnlinkat, func(c *sysCall) bool { return c.path == stuck }, unix.EROFS).syscalls()
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes()),
		MaxBytes: 3 * oneKeyFile(p.PageBytes()), EvictionRatio: 1, Syscalls: sys}, p)
	for i := range 3 {
		if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	loc, _ := s.Locate("k0")
	stuck = filepath.Base(loc.Path)
	for i := 3; i < 6; i++ {
		if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx); err != nil || !ok[0] {
			t.Fatalf("write %d after an undeletable file: %v, %v", i, ok, err)
		}
	}
	st := s.Stats()
	if st.EvictErrors != 1 {
		t.Fatalf("EvictErrors = %d, want 1 (the file is tried once)", st.EvictErrors)
	}
	// The stuck file still takes room: two others fit beside it.
	if n := batchFileCount(t, s); n != 3 {
		t.Fatalf("%d batch files on disk, want 3 (the stuck one and the two newest)", n)
	}
	if got := s.BatchExists([]string{"k4", "k5"}); got != 2 {
		t.Fatalf("the newest pages were evicted: BatchExists = %d", got)
	}
}

// TestEvictOldFormat: old-format files count too, and go oldest first.
func TestEvictOldFormat(t *testing.T) {
	p := newPool(t, mhaCfg)
	page := p.GetDummyFlatDataPage()
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MaxBytes: int64(3 * len(page)), EvictionRatio: 1}, nil)
	for i := range 4 {
		if err := s.Set(fmt.Sprint("k", i), page); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Get("k0", page); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(k0) = %v, want ErrNotFound after eviction", err)
	}
	for i := 1; i < 4; i++ {
		if err := s.Get(fmt.Sprint("k", i), page); err != nil {
			t.Fatalf("Get(k%d) = %v", i, err)
		}
	}
}

// TestEvictFilesFoundOnDisk: a store opened on a directory that other
// stores filled evicts the files with the oldest modification time first,
// in both formats.
func TestEvictFilesFoundOnDisk(t *testing.T) {
	p, idx := randomPages(t, 1)
	dir := t.TempDir()
	w := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes())}, p)
	for i := range 3 {
		if ok, err := w.BatchSetV1([]string{fmt.Sprint("k", i)}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	page, _ := p.GetDataPage(idx[0])
	if err := w.Set("o0", page); err != nil {
		t.Fatal(err)
	}
	// Age the files: k1 oldest, then o0, then k0, then k2.
	base := time.Now().Add(-time.Hour)
	for i, k := range []string{"k1", "o0", "k0", "k2"} {
		path := w.FilePath(k)
		if strings.HasPrefix(k, "k") {
			loc, _ := w.Locate(k)
			path = loc.Path
		}
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	file := oneKeyFile(p.PageBytes())
	s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes()),
		MaxBytes: 3*file + int64(len(page)), EvictionRatio: 1}, p)
	if ok, err := s.BatchSetV1([]string{"k3"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if s.Exists("k1") {
		t.Fatal("k1, the oldest file on disk, was not evicted")
	}
	if got := s.BatchExists([]string{"o0", "k0", "k2", "k3"}); got != 4 {
		t.Fatalf("BatchExists = %d, want 4: only k1 should have gone", got)
	}
}

// TestEvictForeignFileByAge: a batch file another store just wrote is
// recent, not least recently used: this store's older files go first.
func TestEvictForeignFileByAge(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		p, idx := randomPages(t, 1)
		dir := t.TempDir()
		cfg := Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes()), NoWatch: noWatch}
		other := newStore(t, cfg, p)
		cfg.MaxBytes, cfg.EvictionRatio = 3*oneKeyFile(p.PageBytes()), 1
		s := newStore(t, cfg, p)
		for _, k := range []string{"k0", "k1"} {
			if ok, err := s.BatchSetV1([]string{k}, idx); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
		}
		// File times are coarse (a jiffy on ext4): leave a gap that they
		// resolve, as any real cache would between such writes.
		time.Sleep(20 * time.Millisecond)
		if ok, err := other.BatchSetV1([]string{"kb"}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if !s.Exists("kb") { // s learns of the foreign file
			t.Fatal("kb not found")
		}
		if ok, err := s.BatchSetV1([]string{"k2"}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if s.Exists("k0") {
			t.Fatal("k0, the oldest file, was not evicted")
		}
		if got := s.BatchExists([]string{"k1", "kb", "k2"}); got != 3 {
			t.Fatalf("BatchExists(k1, kb, k2) = %d, want 3: the recent foreign file went first", got)
		}
	})
}

// TestEvictionDuringReadServesOwnPages: reads of 40 keys in 40 one-page batch files
// (more than maxOpenFiles) while writes of other keys evict those files:
// no call fails, and every page served is the key's own.
func TestEvictionDuringReadServesOwnPages(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		pc := mhaCfg
		pc.Pages = 200
		p := newPool(t, pc)
		const nk = 40
		src, _ := p.Alloc(2 * nk * ps)
		fillRandom(t, p, src)
		keys := make([]string, 2*nk)
		for i := range keys {
			keys[i] = fmt.Sprintf("k%d", i)
		}
		s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", NoWatch: noWatch, MaxBatchFileBytes: 1,
			MaxBytes: (nk + 5) * oneKeyFile(p.PageBytes()), EvictionRatio: 1}, p)
		w := newStore(t, Config{Dir: s.dir, ModelName: "m", NoWatch: noWatch, MaxBatchFileBytes: 1,
			MaxBytes: (nk + 5) * oneKeyFile(p.PageBytes()), EvictionRatio: 1}, p)
		dst, _ := p.Alloc(nk * ps)
		hits := 0
		for round := range 30 {
			lo := (round % 2) * nk
			if _, err := s.BatchSetV1(keys[lo:lo+nk], src[lo*ps:(lo+nk)*ps]); err != nil {
				t.Fatal(err)
			}
			done := make(chan error)
			go func() {
				other := nk - lo
				_, err := w.BatchSetV1(keys[other:other+nk], src[other*ps:(other+nk)*ps])
				done <- err
			}()
			ok, err := s.BatchGetV1(keys[lo:lo+nk], dst)
			if err != nil {
				t.Fatal(err)
			}
			for j := range ok {
				if ok[j] {
					hits++
					if !samePages(t, p, dst[j*ps], src[(lo+j)*ps]) {
						t.Fatalf("round %d: %s: wrong page", round, keys[lo+j])
					}
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if hits == 0 {
			t.Error("no hit: nothing tested")
		}
	})
}

// TestEvictDownToRatio: a write that takes the total over MaxBytes evicts
// the least recently used files until the total is at most MaxBytes x
// EvictionRatio, the new file included, as SGLang's _evict_locked does.
func TestEvictDownToRatio(t *testing.T) {
	p, idx := randomPages(t, 1)
	page, _ := p.GetDataPage(idx[0])
	n := int64(len(page))
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MaxBytes: 10 * n, EvictionRatio: 0.5}, nil)
	for i := range 10 {
		if err := s.Set(fmt.Sprint("k", i), page); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Evicted != 0 {
		t.Fatalf("evicted %d files at the bound, want none", st.Evicted)
	}
	if err := s.Set("k10", page); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Evicted != 6 {
		t.Fatalf("evicted %d files, want 6: down to 5 files of 10 x 0.5", st.Evicted)
	}
	if got := s.BatchExists([]string{"k6", "k7", "k8", "k9", "k10"}); got != 5 {
		t.Fatalf("BatchExists of the 5 newest = %d", got)
	}
	if s.Exists("k5") {
		t.Fatal("k5 survived")
	}
}
