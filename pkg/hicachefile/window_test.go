package hicachefile

import (
	"bytes"
	"hash/crc32"
	"math/rand/v2"
	"testing"
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
		})
	}
}
