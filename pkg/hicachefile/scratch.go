//go:build linux

package hicachefile

import (
	"sync"
	"unsafe"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

// scratch is the per-call working memory of the V1 calls, reused through
// scratchPool so that a call in steady state allocates nothing per key.
type scratch struct {
	hashes []uint64
	refs   []index.Ref
	metas  []index.Meta
	offs   []int64  // page offset of each key in its file
	crcs   []uint32 // CRC32C of each key's page as read
	order  []int32  // key positions, grouped by file
	state  []uint8  // per key: see the st* constants in v1.go
	table  []int32  // BatchSetV1's table of distinct keys
	ibuf   []byte   // index entries read back from files
	path   []byte   // the path of the batch file being opened (v1Path)
	iov    [][]byte
	owner  []int32
	runs   []readRun
	files  []fileRead
	slots  []uint64 // bitmap of destination pages
	bufs   [][]byte // the page buffers of the call's keys
	// effects are what a read found of whole files, for applyVerdicts to
	// apply to the index once the read is over.
	effects []fileEffect
	// predicted says that refs were predicted (predictRun), not looked
	// up: a copy whose entry is another key's is then a wrong guess.
	predicted bool
}

// v1Path returns the path of the batch file name in the V1 directory dir,
// built in sc's buffer without an allocation: the string is valid until
// the next v1Path, and must not be kept.
func (sc *scratch) v1Path(dir, name string) string {
	sc.path = append(append(append(sc.path[:0], dir...), '/'), name...)
	return unsafe.String(unsafe.SliceData(sc.path), len(sc.path))
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// getScratch returns a scratch with room for n keys.
func getScratch(n int) *scratch {
	sc := scratchPool.Get().(*scratch)
	if cap(sc.hashes) < n {
		sc.hashes = make([]uint64, n)
		sc.refs = make([]index.Ref, n)
		sc.metas = make([]index.Meta, n)
		sc.offs = make([]int64, n)
		sc.crcs = make([]uint32, n)
		sc.order = make([]int32, n)
		sc.state = make([]uint8, n)
	}
	sc.hashes, sc.refs, sc.metas = sc.hashes[:n], sc.refs[:n], sc.metas[:n]
	sc.offs, sc.crcs, sc.order, sc.state = sc.offs[:n], sc.crcs[:n], sc.order[:n], sc.state[:n]
	return sc
}

// hash sets sc.hashes to the digests of keys.
func (sc *scratch) hash(x *index.Index, keys []string) {
	for i, k := range keys {
		sc.hashes[i] = x.Hash(k)
	}
}

// putScratch returns sc to the pool, unless it grew too large to keep.
func putScratch(sc *scratch) {
	if cap(sc.hashes) > 1<<16 || cap(sc.ibuf) > 8<<20 || cap(sc.bufs) > 1<<18 {
		return
	}
	clear(sc.iov[:cap(sc.iov)]) // drop references to pool memory
	clear(sc.runs[:cap(sc.runs)])
	clear(sc.files[:cap(sc.files)])
	clear(sc.effects[:cap(sc.effects)])
	sc.effects = sc.effects[:0]
	sc.predicted = false
	scratchPool.Put(sc)
}
