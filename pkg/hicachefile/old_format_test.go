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

// TestWrongSizedOldFileNotStored: a 0-byte, 7-byte or one-byte-too-long
// old-format file does not count as stored: a write of the key replaces
// it, and the key is served after.
func TestWrongSizedOldFileNotStored(t *testing.T) {
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

// TestAmbiguousOldNamesStayOffV1: model "x_m"'s old-format file of key
// "k" has the name model "m" would give key "k_x": BatchGetV1(["k_x"]) of
// model "m" never serves it from the old-format fallback, and
// BatchSetV1(["k_x"]) writes the key rather than taking that file for it.
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
