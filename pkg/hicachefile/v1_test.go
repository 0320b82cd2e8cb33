//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestCopiesPerPool: a key stored by a bfloat16 pool does not count as
// stored for a float16 pool of the same byte size, which could never load
// it. The float16 pool writes its own copy, and each pool reads back its own
// bytes.
func TestCopiesPerPool(t *testing.T) {
	bfCfg := mhaCfg
	bfCfg.DType = hostcache.BFloat16
	fp16, bf16 := newPool(t, mhaCfg), newPool(t, bfCfg)
	dir := t.TempDir()
	a := newStore(t, Config{Dir: dir, ModelName: "m"}, fp16)
	b := newStore(t, Config{Dir: dir, ModelName: "m"}, bf16)
	srcA, _ := fp16.Alloc(mhaCfg.PageSize)
	dstA, _ := fp16.Alloc(mhaCfg.PageSize)
	srcB, _ := bf16.Alloc(mhaCfg.PageSize)
	dstB, _ := bf16.Alloc(mhaCfg.PageSize)
	fillRandom(t, fp16, srcA)
	fillRandom(t, bf16, srcB)
	if ok, err := b.BatchSetV1([]string{"k"}, srcB); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if ok, err := a.BatchGetV1([]string{"k"}, dstA); err != nil || ok[0] {
		t.Fatalf("float16 pool loaded a bfloat16 page: %v, %v", ok, err)
	}
	before := a.Stats().Sets
	if ok, err := a.BatchSetV1([]string{"k"}, srcA); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if a.Stats().Sets != before+1 {
		t.Fatal("the float16 copy was not written: the bfloat16 copy counted as present")
	}
	for _, c := range []struct {
		s        *Store
		p        *hostcache.Pool
		src, dst []int64
	}{{a, fp16, srcA, dstA}, {b, bf16, srcB, dstB}, {newStore(t, Config{Dir: dir, ModelName: "m"}, fp16), fp16, srcA, dstA}} {
		if ok, err := c.s.BatchGetV1([]string{"k"}, c.dst); err != nil || !ok[0] {
			t.Fatalf("%s pool: %v, %v", c.p.Config().DType, ok, err)
		}
		if !samePages(t, c.p, c.src[0], c.dst[0]) {
			t.Fatalf("%s pool read back other bytes", c.p.Config().DType)
		}
	}
}

func TestV1RoundTrip(t *testing.T) {
	for _, layout := range hostcache.Layouts {
		t.Run(string(layout), func(t *testing.T) {
			cfg := mhaCfg
			cfg.Layout = layout
			p := newPool(t, cfg)
			dir := t.TempDir()
			s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(2 * p.PageBytes())}, p)
			src, _ := p.Alloc(5 * cfg.PageSize)
			dst, _ := p.Alloc(5 * cfg.PageSize)
			fillRandom(t, p, src)
			keys := []string{"k0", "k1", "k2", "k3", "k4"}
			ok, err := s.BatchSetV1(keys, src)
			if err != nil || !all(ok) {
				t.Fatalf("BatchSetV1 = %v, %v", ok, err)
			}
			ok, err = s.BatchGetV1(keys, dst)
			if err != nil || !all(ok) {
				t.Fatalf("BatchGetV1 = %v, %v", ok, err)
			}
			for i := range keys {
				want, _ := p.GetDataPage(src[i*cfg.PageSize])
				got, _ := p.GetDataPage(dst[i*cfg.PageSize])
				if !bytes.Equal(want, got) {
					t.Fatalf("page %d differs", i)
				}
			}
			files, _ := filepath.Glob(filepath.Join(s.v1Dir, "*.batch.bin"))
			if len(files) != 3 {
				t.Fatalf("%d batch files, want 3", len(files))
			}
			// A new store on the same directory finds every page.
			s2 := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
			if n := s2.BatchExists(keys); n != len(keys) {
				t.Fatalf("BatchExists after reopen = %d", n)
			}
			// Old interface: write and read back through .bin files.
			page, _ := p.GetDataPage(src[0])
			if err := s.Set("old", page); err != nil {
				t.Fatal(err)
			}
			onDisk, _ := os.ReadFile(s.FilePath("old"))
			if !bytes.Equal(onDisk, page) {
				t.Fatal(".bin content differs from GetDataPage")
			}
			ok, err = s.BatchGetV1([]string{"old"}, dst[:cfg.PageSize])
			if err != nil || !ok[0] {
				t.Fatalf("BatchGetV1 of old file = %v, %v", ok, err)
			}
			got, _ := p.GetDataPage(dst[0])
			if !bytes.Equal(got, page) {
				t.Fatal("V1 read of .bin file differs")
			}
			if err := s.Get("missing", page); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get(missing) = %v", err)
			}
		})
	}
}
