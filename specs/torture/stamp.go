package torture

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"

	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/pools"
)

// The pool every torture spec uses: MHA, page_first, float16, 4 tokens per
// page, 2 layers and 2 KV heads, so that a page is 64*headDim bytes.
const pageSize = 4

// tortureShape is the shape of a torture pool of pages pages whose pages
// are 64*headDim bytes.
func tortureShape(headDim, pages int) pools.Shape {
	return pools.Shape{Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.Float16,
		PageSize: pageSize, Pages: pages, Layers: 2, Heads: 2, HeadDim: headDim}
}

// stampHeader is the bytes at the start of a stamped page: the generation
// and the writer, as written, then the PRNG stream.
const stampHeader = 16

// stamp fills page (a flat data page) with bytes that only (owner, key, gen,
// writer) produce: gen and writer in the first 16 bytes, then a PRNG stream
// seeded with all four. owner names the store that writes the page (model
// and rank), so that a page of another store, or of another key, never
// verifies.
func stamp(page []byte, owner, key string, gen uint64, writer uint32) {
	binary.LittleEndian.PutUint64(page[0:8], gen)
	binary.LittleEndian.PutUint32(page[8:12], writer)
	binary.LittleEndian.PutUint32(page[12:16], uint32(len(page)))
	h := fnv.New64a()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d", owner, key, gen, writer)
	r := rand.New(rand.NewPCG(h.Sum64(), gen))
	rest := page[stampHeader:]
	for len(rest) >= 8 {
		binary.LittleEndian.PutUint64(rest, r.Uint64())
		rest = rest[8:]
	}
	for i := range rest {
		rest[i] = byte(r.Uint32())
	}
}

// verify reports whether page holds a stamp of (owner, key), and its
// generation. scratch is a buffer of len(page) bytes, overwritten.
func verify(page, scratch []byte, owner, key string) (gen uint64, ok bool) {
	if len(page) < stampHeader || len(scratch) != len(page) {
		return 0, false
	}
	gen = binary.LittleEndian.Uint64(page[0:8])
	stamp(scratch, owner, key, gen, binary.LittleEndian.Uint32(page[8:12]))
	return gen, string(scratch) == string(page)
}

// describe says what a wrong page holds, for failure messages.
func describe(page []byte) string {
	if len(page) < stampHeader {
		return fmt.Sprintf("%d bytes", len(page))
	}
	zero := true
	for _, b := range page {
		if b != 0 {
			zero = false
			break
		}
	}
	if zero {
		return "all zeros"
	}
	return fmt.Sprintf("gen %d, writer %d, first bytes %x", binary.LittleEndian.Uint64(page[0:8]),
		binary.LittleEndian.Uint32(page[8:12]), page[16:24])
}
