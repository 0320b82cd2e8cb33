//go:build linux

package hicachefile

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestChecksummed moves pages of sizes around the window size through a
// fake file and checks every CRC and every byte, for reads and writes.
func TestChecksummed(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name       string
		pages, bpp int
		bufLen     int
	}{
		{"small pages", 100, 2, 256},
		{"page = window", 3, 1, ioWindow},
		{"buffers straddle windows", 4, 3, ioWindow/3 + 7},
		{"large buffers", 2, 2, 2*ioWindow + 5},
		{"empty buffers", 3, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pages := make([][][]byte, tc.pages)
			var flat []byte
			for p := range pages {
				for range tc.bpp {
					b := make([]byte, tc.bufLen)
					for i := range b {
						b[i] = byte(rng.Uint32())
					}
					pages[p] = append(pages[p], b)
					flat = append(flat, b...)
				}
			}
			const base = 4096
			file := make([]byte, base+len(flat))
			maxWin := 0
			write := func(bufs [][]byte, off int64) error {
				n := 0
				for _, b := range bufs {
					n += copy(file[off+int64(n):], b)
				}
				maxWin = max(maxWin, n)
				return nil
			}
			crcs := make([]uint32, len(pages))
			err := checksummed(len(pages), func(j int) [][]byte { return pages[j] }, crcs, base, true, new(window), nil, write)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(file[base:], flat) {
				t.Fatal("written bytes differ")
			}
			if maxWin > ioWindow {
				t.Fatalf("a window of %d bytes, limit %d", maxWin, ioWindow)
			}
			pageLen := tc.bpp * tc.bufLen
			for p := range pages {
				if want := crc32.Checksum(flat[p*pageLen:(p+1)*pageLen], castagnoli); crcs[p] != want {
					t.Fatalf("write: page %d CRC %08x, want %08x", p, crcs[p], want)
				}
			}
			for _, pg := range pages {
				for _, b := range pg {
					clear(b)
				}
			}
			read := func(bufs [][]byte, off int64) error {
				n := 0
				for _, b := range bufs {
					n += copy(b, file[off+int64(n):])
				}
				return nil
			}
			got := make([]uint32, len(pages))
			err = checksummed(len(pages), func(j int) [][]byte { return pages[j] }, got, base, false, new(window), nil, read)
			if err != nil {
				t.Fatal(err)
			}
			var back []byte
			for _, pg := range pages {
				for _, b := range pg {
					back = append(back, b...)
				}
			}
			if !bytes.Equal(back, flat) {
				t.Fatal("read bytes differ")
			}
			for p := range pages {
				if got[p] != crcs[p] {
					t.Fatalf("read: page %d CRC %08x, want %08x", p, got[p], crcs[p])
				}
			}
			// The pipelined read, whatever the size, in windows of two
			// sizes, into CRCs that hold garbage from an earlier call.
			for _, win := range []int{ioWindow, directWindow} {
				for p := range got {
					got[p] = 0xdeadbeef
				}
				err = checksummedPipelined(len(pages), func(j int) [][]byte { return pages[j] }, got, base, nil, win, read)
				if err != nil {
					t.Fatal(err)
				}
				for p := range pages {
					if got[p] != crcs[p] {
						t.Fatalf("pipelined read, window %d: page %d CRC %08x, want %08x", win, p, got[p], crcs[p])
					}
				}
			}
		})
	}
}

// TestLargeReadPipelined reads a batch of 1 MiB pages, large enough that
// the CRC32C runs on its own goroutine alongside the reads (and, without
// DirectIO, the index entries come in the last window), twice, checking
// the bytes, then that a flipped byte fails only its page.
func TestLargeReadPipelined(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("DirectIO=%v", direct), func(t *testing.T) { testLargeReadPipelined(t, direct) })
	}
}

func testLargeReadPipelined(t *testing.T, direct bool) {
	cfg := hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.Float16,
		PageSize: 64, Pages: 16, LayerNum: 8, HeadNum: 8, HeadDim: 64}
	p := newPool(t, cfg)
	src, _ := p.Alloc(8 * cfg.PageSize)
	dst, _ := p.Alloc(8 * cfg.PageSize)
	fillRandom(t, p, src)
	if int64(8*p.PageBytes()) < pipelineBytes {
		t.Fatalf("setup: %d bytes do not reach the pipelined read", 8*p.PageBytes())
	}
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", IOWorkers: 1, DirectIO: direct}, p)
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	if ok, err := s.BatchSetV1(keys, src); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	check := func(want []bool) {
		t.Helper()
		ok, err := s.BatchGetV1(keys, dst)
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if ok[i] != want[i] {
				t.Fatalf("ok = %v, want %v", ok, want)
			}
			if ok[i] && !samePages(t, p, src[i*cfg.PageSize], dst[i*cfg.PageSize]) {
				t.Fatalf("page %d reported true with other bytes", i)
			}
		}
	}
	check([]bool{true, true, true, true, true, true, true, true})
	check([]bool{true, true, true, true, true, true, true, true}) // scratch reused
	loc, _ := s.Locate("f")
	f, err := os.OpenFile(loc.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var one [1]byte
	_, _ = f.ReadAt(one[:], loc.Offset+loc.Length/2)
	one[0] ^= 0x10
	_, _ = f.WriteAt(one[:], loc.Offset+loc.Length/2)
	_ = f.Close()
	check([]bool{true, true, true, true, true, false, true, true})
}
