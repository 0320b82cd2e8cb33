//go:build linux

package hicachefile

import (
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestWrittenCRCsAreCRC32C: the CRC32C that BatchSetV1 records for
// each page (crc32c.Pages, a block of 48 pages at a time, three at once) is
// hash/crc32's of the page's bytes as they lie in the file, for batches of
// 1 to 100 pages (one or two left over a group of three, a block and one
// more) and pools of every layout whose buffers crc32cPages takes (of
// 256, 128 or 384 bytes) and leaves to hash/crc32 (of 18 or 90 bytes). A read computes its CRCs with the same
// crc32c.Pages, so only a check against another implementation finds a CRC
// that both get wrong alike.
func TestWrittenCRCsAreCRC32C(t *testing.T) {
	seed := seedCfg
	seed.Pages = 128
	mha := mhaCfg
	mha.Pages = 128
	odd := hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.LayerFirst, DType: hostcache.Float16,
		PageSize: 3, Pages: 128, LayerNum: 5, HeadNum: 1, HeadDim: 3}
	pools := []struct {
		name string
		cfg  hostcache.Config
	}{{"seed", seed}}
	for _, layout := range hostcache.Layouts {
		for _, c := range []hostcache.Config{mha, odd} {
			c.Layout = layout
			pools = append(pools, struct {
				name string
				cfg  hostcache.Config
			}{fmt.Sprintf("%s-%d", layout, c.HeadDim), c})
		}
	}
	for _, pc := range pools {
		for _, n := range []int{1, 2, 3, 4, 47, 48, 49, 50, 100} {
			t.Run(fmt.Sprintf("%s/%d", pc.name, n), func(t *testing.T) {
				p := newPool(t, pc.cfg)
				src, err := p.Alloc(n * pc.cfg.PageSize)
				if err != nil {
					t.Fatal(err)
				}
				fillRandom(t, p, src)
				s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
				keys := make([]string, n)
				for i := range keys {
					keys[i] = sglangKey("crc", n, i)
				}
				if ok, err := s.BatchSetV1(keys, src); err != nil || !all(ok) {
					t.Fatal(ok, err)
				}
				files, _ := filepath.Glob(filepath.Join(s.v1Dir, "*.batch.bin"))
				pages := 0
				for _, f := range files {
					b, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					tr, err := batchfile.ParseTrailer(b[len(b)-trailerSize:], int64(len(b)))
					if err != nil {
						t.Fatal(err)
					}
					ents, err := batchfile.ParseIndex(b[tr.IndexOff:tr.IndexOff+tr.IndexLen], tr)
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range ents {
						if got := crc32.Checksum(b[e.Off:e.Off+e.Length], castagnoli); got != e.CRC {
							t.Errorf("%s: page at %d of %s: entry's CRC %08x, hash/crc32 %08x", filepath.Base(f), e.Off, e.Key, e.CRC, got)
						}
						pages++
					}
				}
				if pages != n {
					t.Fatalf("%d pages in %d files, want %d", pages, len(files), n)
				}
			})
		}
	}
}
