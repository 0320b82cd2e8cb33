//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// TestWrongSizedOldFileReplacedByEveryWrite: every wrong size of an old-format file, with and
// without a pool, is absent with a pool, replaced by every write, then
// served.
func TestWrongSizedOldFileReplacedByEveryWrite(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 1)
	page, _ := p.GetDataPage(idx[0])
	pb := len(page)
	for _, n := range []int{0, 1, 7, pb - 1, pb + 1, 2 * pb} {
		for _, withPool := range []bool{false, true} {
			dir := t.TempDir()
			var s *Store
			if withPool {
				s = newStore(t, Config{Dir: dir, ModelName: "m"}, p)
			} else {
				s = newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
			}
			for _, k := range []string{"a", "b", "c", "d_e"} {
				if err := os.WriteFile(s.FilePath(k), make([]byte, n), 0o644); err != nil {
					t.Fatal(err)
				}
				if withPool && s.Exists(k) {
					t.Errorf("size %d: Exists(%s) with a pool", n, k)
				}
			}
			got := make([]byte, pb)
			if err := s.Get("a", got); !errors.Is(err, ErrCorrupt) {
				t.Errorf("size %d: Get = %v, want ErrCorrupt", n, err)
			}
			if err := s.Set("a", page); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.BatchSet([]string{"b"}, [][]byte{page}); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
			for _, k := range []string{"a", "b"} {
				if err := s.Get(k, got); err != nil || !bytes.Equal(got, page) {
					t.Errorf("size %d pool %v: Get(%s) after write = %v", n, withPool, k, err)
				}
			}
			if !withPool {
				_ = s.RegisterMemPoolHost(p)
			}
			if s.Exists("c") || s.Exists("d_e") {
				t.Errorf("size %d: Exists(c) after registering", n)
			}
			if ok, err := s.BatchSetV1([]string{"c", "d_e"}, append(append([]int64{}, idx[:ps]...), idx[:ps]...)); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			dst, _ := p.Alloc(2 * ps)
			if ok, err := s.BatchGetV1([]string{"c", "d_e"}, dst); err != nil || !all(ok) || !samePages(t, p, dst[0], idx[0]) || !samePages(t, p, dst[ps], idx[0]) {
				t.Errorf("size %d: BatchGetV1 after BatchSetV1 = %v, %v", n, ok, err)
			}
			_ = p.Free(dst)
		}
	}
}
