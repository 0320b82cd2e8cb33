//go:build linux

package hicachefile

import (
	"fmt"
	"os"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// directCfg has 4 KiB-aligned page buffers in the page_first family, which
// O_DIRECT can take; oddCfg has 192-byte buffers, which it cannot.
var (
	directCfg = hostcache.Config{Kind: hostcache.MHA, DType: hostcache.Float16,
		PageSize: 16, Pages: 16, LayerNum: 2, HeadNum: 2, HeadDim: 32}
	oddCfg = hostcache.Config{Kind: hostcache.MHA, DType: hostcache.Float16,
		PageSize: 16, Pages: 16, LayerNum: 2, HeadNum: 2, HeadDim: 3}
)

// TestDirectIO reads batch files with O_DIRECT where the buffers are
// aligned, falls back to the page cache where they are not, and serves
// exactly the bytes written either way.
func TestDirectIO(t *testing.T) {
	const n = 5
	for _, c := range []struct {
		name    string
		cfg     hostcache.Config
		aligned bool
	}{{"aligned", directCfg, true}, {"unaligned", oddCfg, false}} {
		for _, layout := range hostcache.Layouts {
			t.Run(c.name+"/"+string(layout), func(t *testing.T) {
				cfg := c.cfg
				cfg.Layout = layout
				p := newPool(t, cfg)
				src, _ := p.Alloc(n * cfg.PageSize)
				dst, _ := p.Alloc(n * cfg.PageSize)
				fillRandom(t, p, src)
				s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", DirectIO: true}, p)
				keys := []string{"a", "b", "c", "d", "e"}
				if ok, err := s.BatchSetV1(keys, src); err != nil || !all(ok) {
					t.Fatal(ok, err)
				}
				if ok, err := s.BatchGetV1(keys, dst); err != nil || !all(ok) {
					t.Fatal(ok, err)
				}
				for i := range n {
					if !samePages(t, p, src[i*cfg.PageSize], dst[i*cfg.PageSize]) {
						t.Fatalf("page %d differs", i)
					}
				}
				got := s.Stats().DirectBytes
				switch {
				case !c.aligned && got != 0:
					t.Fatalf("%d bytes read direct into unaligned buffers", got)
				case c.aligned && layout != hostcache.LayerFirst && got != int64(n*p.PageBytes()):
					if got == 0 {
						requireDirectIO(t, s.Dir())
					}
					t.Fatalf("DirectBytes = %d, want %d", got, n*p.PageBytes())
				}
			})
		}
	}
}

// TestDirectIOBadFiles: with O_DIRECT, a flipped byte still fails only its
// page, and a truncated file, which has lost its index and with it the
// keys and checksums of its pages, serves none of them.
func TestDirectIOBadFiles(t *testing.T) {
	const n = 4
	cfg := directCfg
	cfg.Layout = hostcache.PageFirst
	p := newPool(t, cfg)
	src, _ := p.Alloc(n * cfg.PageSize)
	dst, _ := p.Alloc(n * cfg.PageSize)
	fillRandom(t, p, src)
	keys := []string{"a", "b", "c", "d"}
	for _, damage := range []string{"flip", "truncate"} {
		t.Run(damage, func(t *testing.T) {
			s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", DirectIO: true}, p)
			if ok, err := s.BatchSetV1(keys, src); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			loc, _ := s.Locate("c")
			b, err := os.ReadFile(loc.Path)
			if err != nil {
				t.Fatal(err)
			}
			want := []bool{true, true, false, true}
			switch damage {
			case "flip":
				b[loc.Offset+5] ^= 0x40
				if err := os.WriteFile(loc.Path, b, 0o644); err != nil {
					t.Fatal(err)
				}
			case "truncate":
				// The store reads each key's entry back from the file's
				// own index to check it: with the index cut off, no page
				// can be verified.
				if err := os.Truncate(loc.Path, loc.Offset+loc.Length/2); err != nil {
					t.Fatal(err)
				}
				want = []bool{false, false, false, false}
			}
			ok, err := s.BatchGetV1(keys, dst)
			if err != nil {
				t.Fatal(err)
			}
			for i := range keys {
				if ok[i] != want[i] {
					t.Fatalf("after %s: ok = %v, want %v", damage, ok, want)
				}
				if ok[i] && !samePages(t, p, src[i*cfg.PageSize], dst[i*cfg.PageSize]) {
					t.Fatalf("after %s: page %d reported true with other bytes", damage, i)
				}
			}
		})
	}
}

// TestDirectBytesCountOnlyPagesServed: a DirectIO read over two batch
// files, the second truncated in its last page so that its run fails,
// counts in DirectBytes the pages served from the first, read direct, and
// nothing of the failed run's windows (a run read again page by page
// counts once, if at all). Where the file system takes no O_DIRECT, the
// test is skipped.
func TestDirectBytesCountOnlyPagesServed(t *testing.T) {
	cfg := directCfg
	cfg.Layout = hostcache.PageFirst
	cfg.Pages = 400
	p := newPool(t, cfg)
	n := 200
	src, _ := p.Alloc(n * cfg.PageSize)
	dst, _ := p.Alloc(n * cfg.PageSize)
	fillRandom(t, p, src)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	// Two batch files: the first is read direct and served, the second,
	// truncated, fails.
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", DirectIO: true, IOWorkers: 1,
		MaxBatchFileBytes: int64(n / 2 * p.PageBytes())}, p)
	if ok, err := s.BatchSetV1(keys, src); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	first, _ := s.Locate(keys[0])
	loc, _ := s.Locate(keys[n-1])
	if first.Path == loc.Path {
		t.Fatalf("setup: keys %s and %s share the file %s", keys[0], keys[n-1], loc.Path)
	}
	if err := os.Truncate(loc.Path, loc.Offset+loc.Length/2); err != nil {
		t.Fatal(err)
	}
	ok, _ := s.BatchGetV1(keys, dst)
	served := int64(0)
	for _, b := range ok {
		if b {
			served += int64(p.PageBytes())
		}
	}
	st := s.Stats()
	if st.DirectBytes == 0 {
		requireDirectIO(t, s.Dir())
		t.Errorf("DirectBytes = 0: no page was read direct, although the file system of %s takes O_DIRECT", s.Dir())
	}
	if st.DirectBytes > served {
		t.Errorf("DirectBytes = %d, but only %d bytes were read (%d pages served)", st.DirectBytes, served, served/int64(p.PageBytes()))
	}
}
