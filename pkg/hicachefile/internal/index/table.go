package index

import "sync"

// slot is one key copy: 20 bytes, no pointers, so the garbage collector
// never scans a table however many pages it indexes. File 0 marks an empty
// slot. The digest is split in two halves to keep the slot 4-byte aligned.
type slot struct {
	lo, hi uint32 // the key's digest
	file   uint32
	ent    uint32
	page   uint32
}

// hash returns the slot's digest.
func (sl *slot) hash() uint64 { return uint64(sl.hi)<<32 | uint64(sl.lo) }

// makeSlot returns the slot of a copy.
func makeSlot(h uint64, file, ent, page uint32) slot {
	return slot{lo: uint32(h), hi: uint32(h >> 32), file: file, ent: ent, page: page}
}

// shard is an open-addressing table with linear probing, grown by doubling
// at 3/4 full (a miss then probes about 8 slots, against 32 at 7/8) and shrunk by backward-shift deletion, so that it has no
// tombstones. Copies of one key (several files hold it) are separate slots
// with the same hash.
type shard struct {
	mu    sync.RWMutex
	slots []slot
	mask  uint64
	count int
	_     [64]byte // keeps neighbouring shards' locks off one cache line
}

// minSlots is the size of an empty shard's table.
const minSlots = 16

// reset empties the shard. A table that has grown keeps its size: a
// store refills after a Clear, as a cache does, and would otherwise pay
// every doubling again (in a filling store about as much as the inserts
// themselves). Forgetting files one by one still shrinks it (shrink).
func (s *shard) reset() {
	if len(s.slots) > minSlots {
		clear(s.slots)
	} else {
		s.slots = make([]slot, minSlots)
		s.mask = minSlots - 1
	}
	s.count = 0
}

// start returns the home slot of hash: its low bits (the top ones chose the
// shard).
func (s *shard) start(h uint64) uint64 { return h & s.mask }

// insert adds sl. The caller holds s.mu.
func (s *shard) insert(sl slot) {
	if (s.count+1)*4 > len(s.slots)*3 {
		s.grow()
	}
	p := s.start(sl.hash())
	for s.slots[p].file != 0 {
		p = (p + 1) & s.mask
	}
	s.slots[p] = sl
	s.count++
}

// reserve grows the table, once, to take n more slots without growing
// again. The caller holds s.mu.
func (s *shard) reserve(n int) {
	size := len(s.slots)
	for (s.count+n)*4 > size*3 {
		size *= 2
	}
	if size > len(s.slots) {
		s.resize(size)
	}
}

// touch loads the home slot of each hashes[i], i in group, and returns a
// sum of what it read, which callers ignore: the loads are independent, so
// the CPU has many cache misses in flight at once, and the probes that
// follow, one key at a time, find their slots in cache. In a table larger
// than the cache that turns one memory latency per key into a fraction of
// one. It is not inlined, so that its loads are not dropped as unused. The
// caller holds s.mu.
//
//go:noinline
func (s *shard) touch(hashes []uint64, group []int32) uint32 {
	if len(s.slots) <= touchMin {
		return 0
	}
	var sum uint32
	for _, i := range group {
		sum += s.slots[hashes[i]&s.mask].file
	}
	return sum
}

// touchMin is the table size (in slots) up to which touch does nothing: a
// table of up to 20 KB stays in the first-level cache.
const touchMin = 1024

// grow doubles the table.
func (s *shard) grow() { s.resize(2 * len(s.slots)) }

// resize moves the table to size slots, a power of two.
func (s *shard) resize(size int) {
	old := s.slots
	s.slots = make([]slot, size)
	s.mask = uint64(len(s.slots) - 1)
	for _, sl := range old {
		if sl.file == 0 {
			continue
		}
		p := s.start(sl.hash())
		for s.slots[p].file != 0 {
			p = (p + 1) & s.mask
		}
		s.slots[p] = sl
	}
}

// remove deletes every slot of hash that match accepts, shifting later
// slots of the probe run back so that no lookup stops short. The caller
// holds s.mu.
func (s *shard) remove(h uint64, match func(slot) bool) {
	p := s.start(h)
	for s.slots[p].file != 0 {
		if sl := s.slots[p]; sl.hash() == h && match(sl) {
			s.deleteAt(p)
			continue // p now holds the next slot of the run
		}
		p = (p + 1) & s.mask
	}
	s.shrink()
}

// removeLo deletes the slots of file whose digest's low half is lo, as
// remove does. The caller holds s.mu.
func (s *shard) removeLo(lo uint32, file uint32) {
	p := uint64(lo) & s.mask
	for s.slots[p].file != 0 {
		if sl := s.slots[p]; sl.lo == lo && sl.file == file {
			s.deleteAt(p)
			continue
		}
		p = (p + 1) & s.mask
	}
	s.shrink()
}

// deleteAt empties slot p and moves back the slots after it whose home is
// at or before p (backward-shift deletion for linear probing).
func (s *shard) deleteAt(p uint64) {
	s.count--
	hole := p
	for q := (p + 1) & s.mask; s.slots[q].file != 0; q = (q + 1) & s.mask {
		home := s.start(s.slots[q].hash())
		// The slot at q may fill the hole unless its home lies cyclically
		// in (hole, q].
		if (q-home)&s.mask >= (q-hole)&s.mask {
			s.slots[hole] = s.slots[q]
			hole = q
		}
	}
	s.slots[hole] = slot{}
}

// shrink halves the table once it is less than an eighth full, so that a
// shard that held many keys does not keep their memory after they go.
func (s *shard) shrink() {
	if s.count*8 < len(s.slots) && len(s.slots) > minSlots {
		s.resize(len(s.slots) / 2)
	}
}
