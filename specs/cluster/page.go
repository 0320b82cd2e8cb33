package cluster

import (
	"encoding/binary"
	"hash/fnv"

	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/pools"
)

// nodeShape is the one pool shape every node uses, so that each can load
// the others' V1 pages: MHA, layer_first (a page is scattered over 2*L
// buffers), bf16, 16 tokens of 4 layers x 2 heads x 32 dims: 16 KiB a page.
var nodeShape = pools.Shape{Kind: hostcache.MHA, Layout: hostcache.LayerFirst, DType: hostcache.BFloat16,
	PageSize: 16, Pages: 256, Layers: 4, Heads: 2, HeadDim: 32}

// A stamp names one write of one page: the node that wrote it, the TP rank
// of its store, a generation (bumped when a spec rewrites keys after Clear)
// and a sequence number. It opens the page, and the rest of the page is
// derived from the key and the stamp, so a reader checks any page it is
// served without knowing who wrote it: a torn, mixed, misplaced or foreign
// page fails the check.
type stamp uint64

// newStamp packs a stamp.
func newStamp(node, rank, gen int, seq uint32) stamp {
	return stamp(uint64(node&0xff)<<56 | uint64(rank&0xff)<<48 | uint64(gen&0xffff)<<32 | uint64(seq))
}

// gen returns the generation of the write st names.
func (s stamp) gen() int { return int(s >> 32 & 0xffff) }

// fillPage writes into flat, a flat data page, the page of key under st in
// the store named by tag.
func fillPage(flat []byte, key, tag string, st stamp) {
	binary.LittleEndian.PutUint64(flat, uint64(st))
	x := seed(key, tag, st)
	for off := 8; off < len(flat); off += 8 {
		x = splitmix(x)
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], x)
		copy(flat[off:], b[:])
	}
}

// checkPage reports the stamp of the page of key in flat, and whether flat
// is exactly the page fillPage writes for that key, tag and stamp.
func checkPage(flat []byte, key, tag string) (stamp, bool) {
	if len(flat) < 8 {
		return 0, false
	}
	st := stamp(binary.LittleEndian.Uint64(flat))
	x := seed(key, tag, st)
	for off := 8; off < len(flat); off += 8 {
		x = splitmix(x)
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], x)
		n := copy(b[:], flat[off:])
		if string(b[:n]) != string(flat[off:off+n]) {
			return st, false
		}
	}
	return st, true
}

// seed mixes key, tag and st into the generator's first state.
func seed(key, tag string, st stamp) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key + "\x00" + tag))
	return h.Sum64() ^ uint64(st)*0x9e3779b97f4a7c15
}

// splitmix is one step of the SplitMix64 generator.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	z := x
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
