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
