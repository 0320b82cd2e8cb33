//go:build linux

package hicachefile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// newPool returns a pool of cfg closed at the end of the test.
func newPool(t testing.TB, cfg hostcache.Config) *hostcache.Pool {
	t.Helper()
	p, err := hostcache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// newStore returns a store on dir with pool registered, closed at the end of
// the test.
func newStore(t testing.TB, cfg Config, p *hostcache.Pool) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if p != nil {
		if err := s.RegisterMemPoolHost(p); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// fillRandom writes random bytes into every page at indices.
func fillRandom(t testing.TB, p *hostcache.Pool, indices []int64) {
	t.Helper()
	bufs, err := p.PageBuffers(indices)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bufs {
		_, _ = rand.Read(b)
	}
}

// randomPages returns a pool of mhaCfg with n pages of random bytes
// allocated at idx.
func randomPages(t testing.TB, n int) (*hostcache.Pool, []int64) {
	t.Helper()
	p := newPool(t, mhaCfg)
	idx, err := p.Alloc(n * mhaCfg.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, p, idx)
	return p, idx
}

var mhaCfg = hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.LayerFirst, DType: hostcache.Float16,
	PageSize: 4, Pages: 16, LayerNum: 3, HeadNum: 2, HeadDim: 8}

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

func all(ok []bool) bool {
	for _, b := range ok {
		if !b {
			return false
		}
	}
	return true
}
