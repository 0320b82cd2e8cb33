//go:build linux

package hicachefile

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOthersClearLeavesTheCount: files another store's Clear removed leave
// this store's count: they are neither evicted again (no Stats.Evicted for
// them) nor make it evict files that fit.
func TestOthersClearLeavesTheCount(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 4)
	page, err := p.GetDataPage(idx[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := oneKeyFile(p.PageBytes())
	cfg := Config{Dir: dir, ModelName: "m", NoWatch: true, MaxBatchFileBytes: int64(p.PageBytes()),
		MaxBytes: 6 * file, EvictionRatio: 1} // its 5 files fit; 3 more do not count beside them
	s := newStore(t, cfg, p)
	for i := range 3 {
		if err := s.Set(fmt.Sprint("old", i), page); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if ok, err := s.BatchSetV1([]string{fmt.Sprint("v", i)}, idx[i*ps:(i+1)*ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	other := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true}, nil)
	if err := other.Clear(); err != nil {
		t.Fatal(err)
	}
	keys := []string{"n0", "n1", "n2"}
	for i, k := range keys {
		if ok, err := s.BatchSetV1([]string{k}, idx[(i%4)*ps:(i%4+1)*ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	if n := s.BatchExists(keys); n != 3 {
		t.Errorf("%d of 3 pages that fit in MaxBytes still exist", n)
	}
	if st := s.Stats(); st.Evicted != 0 || st.EvictedBytes != 0 {
		t.Errorf("Stats.Evicted = %d (%d bytes) for files another store removed", st.Evicted, st.EvictedBytes)
	}
	if n := lruBytes(s); n != 3*file {
		t.Errorf("the store counts %d bytes, want its 3 files' %d", n, 3*file)
	}
}

// TestOthersOldFilesCountOnceListed: old-format files of the store's suffix
// that another process writes after New count toward MaxBytes from the next
// eviction pass, which lists Dir: the directory is then held to MaxBytes.
func TestOthersOldFilesCountOnceListed(t *testing.T) {
	p, idx := randomPages(t, 1)
	page, err := p.GetDataPage(idx[0])
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	size := int64(len(page))
	s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBytes: 4 * size, EvictionRatio: 1}, nil)
	other := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	for i := range 4 {
		if err := other.Set(fmt.Sprint("theirs", i), page); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := s.Set(fmt.Sprint("ours", i), page); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*_m_0_1.bin"))
	if int64(len(files))*size > 4*size {
		t.Errorf("the directory holds %d old-format files of the suffix, %d bytes over MaxBytes %d", len(files), int64(len(files))*size, 4*size)
	}
	for i := 1; i < 5; i++ {
		if !s.Exists(fmt.Sprint("ours", i)) {
			t.Errorf("ours%d went before another process's older files", i)
		}
	}
}

// TestNoSpaceRetriedBounded: a write that meets ENOSPC again after making
// room (another process took the space freed) makes room again, a bounded
// number of times, before it returns ENOSPC.
func TestNoSpaceRetriedBounded(t *testing.T) {
	ps := mhaCfg.PageSize
	for _, fails := range []int{2, noSpaceRetries, 1 << 30} {
		t.Run(fmt.Sprint(fails), func(t *testing.T) {
			p, idx := randomPages(t, 8)
			page, err := p.GetDataPage(idx[0])
			if err != nil {
				t.Fatal(err)
			}
			var armed atomic.Bool
			var calls atomic.Int64
			sys := Syscalls{Pwritev: func(fd int, iovs [][]byte, off int64) (int, error) {
				if armed.Load() && calls.Add(1) <= int64(fails) {
					return 0, unix.ENOSPC
				}
				return pwritevRaw(fd, iovs, off)
			}}
			s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes()),
				MaxBytes: 1 << 30, Syscalls: sys}, p)
			for i := range 12 { // evictable files for every retry of both writes
				if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx[(i%6)*ps:(i%6+1)*ps]); err != nil || !ok[0] {
					t.Fatal(ok, err)
				}
			}
			for _, write := range []struct {
				name string
				do   func() error
			}{
				{"BatchSetV1", func() error {
					_, err := s.BatchSetV1([]string{"new"}, idx[6*ps:7*ps])
					return err
				}},
				{"Set", func() error { return s.Set("newold", page) }},
			} {
				calls.Store(0)
				armed.Store(true)
				err := write.do()
				armed.Store(false)
				switch {
				case fails <= noSpaceRetries && err != nil:
					t.Errorf("%s after %d ENOSPC: %v", write.name, fails, err)
				case fails > noSpaceRetries && !isNoSpace(err):
					t.Errorf("%s, always ENOSPC: %v, want ENOSPC", write.name, err)
				case fails > noSpaceRetries && calls.Load() != 1+noSpaceRetries:
					t.Errorf("%s, always ENOSPC: %d writes, want %d", write.name, calls.Load(), 1+noSpaceRetries)
				}
			}
		})
	}
}
