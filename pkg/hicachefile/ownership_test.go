//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestNonOwnerNeitherWritesNorEvicts: with eviction configured, a rank that
// does not own its files (an MLA rank other than TP 0 by default, or
// StorageOwner false) refuses new pages through both interfaces and evicts
// nothing, while it still reads what the owner wrote; without eviction it
// writes.
func TestNonOwnerNeitherWritesNorEvicts(t *testing.T) {
	p, idx := randomPages(t, 2)
	ps := mhaCfg.PageSize
	page, _ := p.GetDataPage(idx[0])
	dir := t.TempDir()
	owner := newStore(t, Config{Dir: dir, ModelName: "m", IsMLA: true, TPRank: 0, TPSize: 2, MaxBytes: 1 << 30}, p)
	if err := owner.Set("a", page); err != nil {
		t.Fatal(err)
	}
	// Fill the directory past the non-owner's bound: it must not evict.
	for i := range 4 {
		if err := owner.Set(fmt.Sprint("f", i), page); err != nil {
			t.Fatal(err)
		}
	}
	rank1 := newStore(t, Config{Dir: dir, ModelName: "m", IsMLA: true, TPRank: 1, TPSize: 2, MaxBytes: int64(2 * len(page))}, p)
	if err := rank1.Set("b", page); !errors.Is(err, ErrRefused) {
		t.Fatalf("non-owner Set = %v, want ErrRefused", err)
	}
	if ok, err := rank1.BatchSetV1([]string{"c"}, idx[:ps]); err != nil || ok[0] {
		t.Fatalf("non-owner BatchSetV1 = %v, %v; want false, nil", ok, err)
	}
	if err := rank1.Set("a", page); err != nil {
		t.Fatalf("non-owner Set of a page already stored = %v, want nil", err)
	}
	got := make([]byte, len(page))
	if err := rank1.Get("a", got); err != nil || !bytes.Equal(got, page) {
		t.Fatalf("non-owner Get = %v", err)
	}
	for _, name := range []string{"b_m.bin", "c_m.bin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Fatalf("non-owner created %s (%v)", name, err)
		}
	}
	if n := batchFileCount(t, rank1); n != 0 {
		t.Fatalf("non-owner wrote %d batch files", n)
	}
	if got := rank1.BatchExists([]string{"a", "f0", "f1", "f2", "f3"}); got != 5 {
		t.Fatalf("BatchExists = %d after the non-owner's writes, want 5: it evicted", got)
	}
	if st := rank1.Stats(); st.Evicted != 0 {
		t.Fatalf("non-owner evicted %d files", st.Evicted)
	}

	yes, no := true, false
	forced := newStore(t, Config{Dir: dir, ModelName: "m", IsMLA: true, TPRank: 1, TPSize: 2, MaxBytes: 1 << 30, StorageOwner: &yes}, p)
	if err := forced.Set("d", page); err != nil {
		t.Fatalf("StorageOwner true Set = %v", err)
	}
	mha := newStore(t, Config{Dir: dir, ModelName: "m", MaxBytes: 1 << 30, StorageOwner: &no}, p)
	if err := mha.Set("e", page); !errors.Is(err, ErrRefused) {
		t.Fatalf("StorageOwner false Set = %v, want ErrRefused", err)
	}
	free := newStore(t, Config{Dir: dir, ModelName: "m", IsMLA: true, TPRank: 1, TPSize: 2}, p)
	if err := free.Set("g", page); err != nil {
		t.Fatalf("non-owner without eviction Set = %v, want nil", err)
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

// TestContextParallelRanksNeverShareAFile: two CP ranks writing the same key
// through both interfaces make files of their own, named as SGLang names
// them, and each reads back its own bytes.
func TestContextParallelRanksNeverShareAFile(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 4)
	dir := t.TempDir()
	var stores [2]*Store
	for r := range stores {
		stores[r] = newStore(t, Config{Dir: dir, ModelName: "org/m", TPRank: 1, TPSize: 2, CPRank: r, CPSize: 2}, p)
	}
	pages := [2][]byte{}
	for r, s := range stores {
		pages[r], _ = p.GetDataPage(idx[r*ps])
		if err := s.Set("key", pages[r]); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.BatchSetV1([]string{"v1key"}, idx[r*ps:(r+1)*ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	for r, s := range stores {
		want := filepath.Join(dir, fmt.Sprintf("key_org-m_1_2_cp%d_2.bin", r))
		if s.FilePath("key") != want {
			t.Fatalf("FilePath = %s, want %s", s.FilePath("key"), want)
		}
		b, err := os.ReadFile(want)
		if err != nil || !bytes.Equal(b, pages[r]) {
			t.Fatalf("rank %d's file: %v", r, err)
		}
		batches, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("v1-%s_org-m_1_2_cp%d_2", s.digest, r), fmt.Sprintf("b*_org-m_1_2_cp%d_2.batch.bin", r)))
		if len(batches) != 1 {
			t.Fatalf("rank %d has %d batch files", r, len(batches))
		}
		if ok, err := s.BatchGetV1([]string{"v1key"}, idx[(2+r)*ps:(3+r)*ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		got, _ := p.GetDataPage(idx[(2+r)*ps])
		if !bytes.Equal(got, pages[r]) {
			t.Fatalf("rank %d read another rank's page", r)
		}
	}
}

// TestContextParallelRankValidated: CPRank must lie in [0, CPSize).
func TestContextParallelRankValidated(t *testing.T) {
	for _, c := range []Config{{CPRank: 2, CPSize: 2}, {CPRank: -1, CPSize: 2}, {CPSize: -1}, {CPRank: 1}} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", c, err)
		}
	}
	if err := (Config{CPRank: 3, CPSize: 4}).Validate(); err != nil {
		t.Errorf("Validate(CPRank 3 of 4) = %v", err)
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
