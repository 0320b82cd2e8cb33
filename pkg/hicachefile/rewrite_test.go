//go:build linux

package hicachefile

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestBatchRewrittenInPlaceIsReloaded writes another valid batch of the same
// identity and keys over a store's batch file in place (same inode, same
// size), as cp does: the store must serve the new file's pages, byte for
// byte, after reading its index again, and never report as stored a key
// whose copy failed.
func TestBatchRewrittenInPlaceIsReloaded(t *testing.T) {
	for _, noWatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoWatch=%v", noWatch), func(t *testing.T) {
			cfg := mhaCfg
			cfg.Layout = hostcache.PageFirst
			cfg.Pages = 3 * 64
			p := newPool(t, cfg)
			const n = 64
			keys := make([]string, n)
			for i := range keys {
				keys[i] = fmt.Sprintf("%064x", i+100)
			}
			srcA, _ := p.Alloc(n * cfg.PageSize)
			srcB, _ := p.Alloc(n * cfg.PageSize)
			dst, _ := p.Alloc(n * cfg.PageSize)
			fillRandom(t, p, srcA)
			fillRandom(t, p, srcB)
			dirA, dirB := t.TempDir(), t.TempDir()
			a := newStore(t, Config{Dir: dirA, ModelName: "m", NoWatch: noWatch}, p)
			b := newStore(t, Config{Dir: dirB, ModelName: "m", NoWatch: noWatch}, p)
			if ok, err := a.BatchSetV1(keys, srcA); err != nil || !all(ok) {
				t.Fatalf("a.BatchSetV1 = %v, %v", ok, err)
			}
			if ok, err := b.BatchSetV1(keys, srcB); err != nil || !all(ok) {
				t.Fatalf("b.BatchSetV1 = %v, %v", ok, err)
			}
			fa, fb := batchFiles(t, dirA), batchFiles(t, dirB)
			if len(fa) != 1 || len(fb) != 1 {
				t.Fatalf("batch files: %v, %v", fa, fb)
			}
			var before, after os.FileInfo
			before, _ = os.Stat(fa[0])
			newBytes, err := os.ReadFile(fb[0])
			if err != nil {
				t.Fatal(err)
			}
			// In place: O_TRUNC keeps the inode.
			if err := os.WriteFile(fa[0], newBytes, 0o644); err != nil {
				t.Fatal(err)
			}
			after, _ = os.Stat(fa[0])
			if !os.SameFile(before, after) || before.Size() != after.Size() {
				t.Fatal("the rewrite was not in place, or changed the size: the test tests nothing")
			}
			for round := range 2 {
				fillRandom(t, p, dst)
				ok, err := a.BatchGetV1(keys, dst)
				if err != nil {
					t.Fatal(err)
				}
				served := 0
				for i := range keys {
					want, _ := p.GetDataPage(srcB[i*cfg.PageSize])
					got, _ := p.GetDataPage(dst[i*cfg.PageSize])
					if ok[i] {
						served++
						if !bytes.Equal(want, got) {
							t.Fatalf("round %d: key %d served bytes that are not the file's", round, i)
						}
					}
				}
				if served != n {
					t.Errorf("round %d: served %d of %d keys of the rewritten file; stats %+v", round, served, n, a.Stats())
				}
			}
			if got := a.BatchExists(keys); got != n {
				t.Errorf("BatchExists = %d after the reload, want %d", got, n)
			}
		})
	}
}

// TestBadCopyIsNotStored corrupts a page of a store's batch file in place:
// once a read found it bad, the key is not reported as existing, and a
// write of it is not skipped.
func TestBadCopyIsNotStored(t *testing.T) {
	cfg := mhaCfg
	cfg.Layout = hostcache.PageFirst
	p := newPool(t, cfg)
	keys := []string{"bad0", "bad1", "bad2"}
	src, _ := p.Alloc(len(keys) * cfg.PageSize)
	dst, _ := p.Alloc(len(keys) * cfg.PageSize)
	fillRandom(t, p, src)
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	if ok, err := s.BatchSetV1(keys, src); err != nil || !all(ok) {
		t.Fatalf("BatchSetV1 = %v, %v", ok, err)
	}
	loc, found := s.Locate(keys[1])
	if !found {
		t.Fatal("Locate missed")
	}
	f, err := os.OpenFile(loc.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, loc.Offset); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	ok, err := s.BatchGetV1(keys, dst)
	if err != nil || !ok[0] || ok[1] || !ok[2] {
		t.Fatalf("BatchGetV1 = %v, %v; want the corrupt page alone missed", ok, err)
	}
	if s.Exists(keys[1]) {
		t.Error("a key whose only copy failed is reported as existing")
	}
	ok, err = s.BatchSetV1(keys[1:2], src[cfg.PageSize:2*cfg.PageSize])
	if err != nil || !ok[0] {
		t.Fatalf("BatchSetV1 of the bad key = %v, %v", ok, err)
	}
	if st := s.Stats(); st.Existed != 0 {
		t.Errorf("the write of the bad key was skipped: %+v", st)
	}
	ok, err = s.BatchGetV1(keys[1:2], dst[cfg.PageSize:2*cfg.PageSize])
	want, _ := p.GetDataPage(src[cfg.PageSize])
	got, _ := p.GetDataPage(dst[cfg.PageSize])
	if err != nil || !ok[0] || !bytes.Equal(want, got) {
		t.Errorf("the key written again reads back %v, %v, same bytes %v", ok, err, bytes.Equal(want, got))
	}
}
