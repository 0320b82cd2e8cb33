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
