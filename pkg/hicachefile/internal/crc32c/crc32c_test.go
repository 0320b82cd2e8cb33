package crc32c

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestPageCRCs checks Pages against hash/crc32 for pages of every
// shape it treats apart: buffers of equal and unequal lengths, lengths
// not a multiple of 8, empty buffers, buffers larger than crc3Max,
// unaligned starts, and page counts that leave one or two over.
func TestPageCRCs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	mem := make([]byte, 1<<20)
	for i := range mem {
		mem[i] = byte(r.Uint32())
	}
	for trial := range 2000 {
		n, bpp := r.IntN(14), 1+r.IntN(4)
		same := trial%2 == 0
		// Lengths that crc32cPages takes (multiples of 8 up to
		// crc3Max) in most trials, and some it leaves to hash/crc32.
		length := func() int {
			switch r.IntN(8) {
			case 0:
				return r.IntN(600)
			case 1:
				return crc3Max + 8*r.IntN(3)
			default:
				return 8 * r.IntN(80)
			}
		}
		lens := make([]int, bpp)
		for k := range lens {
			lens[k] = length()
		}
		bufs := make([][]byte, 0, n*bpp)
		for range n {
			for k := range bpp {
				l := lens[k]
				if !same && r.IntN(4) == 0 {
					l = length() // this page's buffer differs from the others'
				}
				off := r.IntN(len(mem) - l)
				bufs = append(bufs, mem[off:off+l])
			}
		}
		got := make([]uint32, n)
		Pages(bufs, bpp, got)
		for j := range n {
			if want := Page(bufs[j*bpp : (j+1)*bpp]); got[j] != want {
				t.Fatalf("trial %d: page %d of %d (bpp %d, lens %v): CRC %08x, want %08x", trial, j, n, bpp, lens, got[j], want)
			}
		}
	}
}

// FuzzPageCRCs checks Pages against hash/crc32 for pages cut from
// arbitrary bytes.
func FuzzPageCRCs(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef"), uint8(3), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, pages, bpp uint8) {
		n, b := int(pages%9), 1+int(bpp%4)
		if n*b == 0 {
			return
		}
		l := len(data) / (n * b)
		bufs := make([][]byte, n*b)
		for i := range bufs {
			bufs[i] = data[i*l : (i+1)*l]
		}
		got := make([]uint32, n)
		Pages(bufs, b, got)
		for j := range n {
			if want := Page(bufs[j*b : (j+1)*b]); got[j] != want {
				t.Fatalf("page %d: %08x, want %08x", j, got[j], want)
			}
		}
	})
}

// BenchmarkPageCRCs checksums 1000 pages of bpp buffers of size bytes
// with Pages and, alternating in one loop, with hash/crc32 page by
// page, and reports x-crc32: Pages' time over hash/crc32's. Its ns/op
// and MB/s time both together.
//
//	go test -run=NONE -bench=PageCRCs ./pkg/hicachefile
func BenchmarkPageCRCs(b *testing.B) {
	for _, c := range []struct{ bpp, size int }{{2, 256}, {1, 512}, {2, 4096}} {
		b.Run(fmt.Sprintf("bpp=%d/size=%d", c.bpp, c.size), func(b *testing.B) {
			const pages = 1000
			mem := make([]byte, pages*c.bpp*c.size)
			bufs := make([][]byte, pages*c.bpp)
			for i := range bufs {
				bufs[i] = mem[i*c.size : (i+1)*c.size]
			}
			crcs := make([]uint32, pages)
			var fast, slow time.Duration
			b.SetBytes(int64(len(mem)))
			for b.Loop() {
				t0 := time.Now()
				Pages(bufs, c.bpp, crcs)
				t1 := time.Now()
				for j := range pages {
					crcs[j] = Page(bufs[j*c.bpp : (j+1)*c.bpp])
				}
				fast, slow = fast+t1.Sub(t0), slow+time.Since(t1)
			}
			b.ReportMetric(float64(fast)/float64(slow), "x-crc32")
		})
	}
}

// TestCrc32cPagesStopsCleanly: crc32cPages, given groups of which one
// has a buffer it does not take, stops before that group, returns how
// many it did, and stores nothing for the group it stopped in, whichever
// of the group's pages and buffers differs; it takes buffers of 0 and of
// crc3Max bytes, not of crc3Max+8 or of a length not a multiple of 8.
func TestCrc32cPagesStopsCleanly(t *testing.T) {
	const bpp, groups = 3, 3
	mem := make([]byte, 3*groups*bpp*(crc3Max+8))
	for i := range mem {
		mem[i] = byte(i*7 + i>>8)
	}
	for _, c := range []struct {
		name     string
		page, k  int // the page and buffer that differ
		length   int // all other buffers' length
		odd      int // that buffer's length
		wantDone int
	}{
		{"page B's last buffer longer", 7, 2, 64, 72, 2},
		{"page C's first buffer shorter", 8, 0, 64, 56, 2},
		{"page A of the first group", 0, 1, 64, 0, 0},
		{"a length not a multiple of 8", 4, 0, 64, 63, 1},
		{"all 60 bytes", 0, 0, 60, 60, 0},
		{"all empty", 0, 0, 0, 0, groups},
		{"crc3Max", 0, 0, crc3Max, crc3Max, groups},
		{"crc3Max+8 everywhere", 0, 0, crc3Max + 8, crc3Max + 8, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			bufs := make([][]byte, 3*groups*bpp)
			pos := 0
			for i := range bufs {
				l := c.length
				if i == c.page*bpp+c.k {
					l = c.odd
				}
				bufs[i] = mem[pos : pos+l : pos+l]
				pos += l
			}
			crcs := make([]uint32, 3*groups+1)
			for i := range crcs {
				crcs[i] = 0xdeadbeef
			}
			done := crc32cPages(&crcs[0], &bufs[0], bpp, groups)
			if !haveCRC3 {
				c.wantDone = 0
			}
			if done != c.wantDone {
				t.Fatalf("done = %d, want %d", done, c.wantDone)
			}
			for j := range crcs {
				want := uint32(0xdeadbeef)
				if j < 3*done {
					want = Page(bufs[j*bpp : (j+1)*bpp])
				}
				if crcs[j] != want {
					t.Errorf("crcs[%d] = %08x, want %08x", j, crcs[j], want)
				}
			}
		})
	}
}
