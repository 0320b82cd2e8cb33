package index

import "slices"

// Batch gathers the keys of many files for one AddBatch, which takes each
// lock once for all of them: what a store does when it loads the indexes
// of thousands of files at once. A Batch is reused after Reset; its zero
// value is empty and ready. It is not safe for concurrent use.
//
// Keys are added one at a time with Key, and the keys added since the last
// EndFile (or Discard, or Reset) become the file's when EndFile names it.
type Batch struct {
	names  []string
	metas  []Meta
	ends   []int // ends[i] is the end of file i's keys in hashes
	hashes []uint64
	ents   []uint32
	pages  []uint32
	ids    []uint32 // AddBatch's scratch: the file id of each key
	fids   []uint32 // AddBatch's scratch: the id of each file
}

// Key adds a key of the file being gathered: its digest (Index.Hash or
// Index.HashBytes), the offset of its entry in the file's on-disk index,
// and the number of its page.
func (b *Batch) Key(hash uint64, ent, page uint32) {
	b.hashes = append(b.hashes, hash)
	b.ents = append(b.ents, ent)
	b.pages = append(b.pages, page)
}

// EndFile makes the keys added since the last EndFile those of the file
// name, with meta. A file with no key is known to the index (Has reports
// it) and holds no copy.
func (b *Batch) EndFile(name string, meta Meta) {
	b.names = append(b.names, name)
	b.metas = append(b.metas, meta)
	b.ends = append(b.ends, len(b.hashes))
}

// Discard drops the keys added since the last EndFile: the file they came
// from failed a check after some of its keys were added.
func (b *Batch) Discard() {
	n := b.keyed()
	b.hashes, b.ents, b.pages = b.hashes[:n], b.ents[:n], b.pages[:n]
}

// keyed returns the number of keys that belong to ended files.
func (b *Batch) keyed() int {
	if len(b.ends) == 0 {
		return 0
	}
	return b.ends[len(b.ends)-1]
}

// Files returns the number of files ended in b.
func (b *Batch) Files() int { return len(b.names) }

// Reset empties b, keeping its memory for the next batch.
func (b *Batch) Reset() {
	clear(b.names) // drop the references to the names
	b.names, b.metas, b.ends = b.names[:0], b.metas[:0], b.ends[:0]
	b.hashes, b.ents, b.pages = b.hashes[:0], b.ents[:0], b.pages[:0]
}

// AddBatch adds every file ended in b, as AddHashed adds one, each
// replacing what the index held of a file of its name (the last one wins
// when b names a file twice). It visits each table shard once for the
// whole batch. Keys added to b after its last EndFile are ignored. b is
// left as it was: Reset it to reuse it.
func (x *Index) AddBatch(b *Batch) {
	nf := len(b.names)
	if nf == 0 {
		return
	}
	nk := b.keyed()
	hashes := b.hashes[:nk]
	if cap(b.ids) < nk {
		b.ids = make([]uint32, nk)
	}
	ids := b.ids[:nk]

	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.fmu.Lock()
	b.fids = x.newIDs(nf, b.fids)
	first := b.fids
	start := 0
	for i, name := range b.names {
		id := first[i]
		end := b.ends[i]
		for k := start; k < end; k++ {
			ids[k] = id
		}
		x.files[id] = file{name: name, meta: b.metas[i], los: lows(hashes[start:end]), gen: x.nextGen()}
		start = end
	}
	x.fmu.Unlock()

	// As AddHashed: insert, then turn the files live, so that a lookup
	// never sees part of a file.
	x.insertKeys(hashes, ids, 0, b.ents, b.pages)

	var olds []uint32
	x.fmu.Lock()
	for i, name := range b.names {
		id := first[i]
		if old, ok := x.names.set(x, name, id); ok {
			olds = append(olds, old)
		}
		x.files[id].live = true
	}
	x.fmu.Unlock()
	for _, old := range olds {
		x.drop(old)
	}
}

// newIDs returns n unused file ids in ids[:0], reusing forgotten ones
// first, with room made for them in x.files. The caller holds x.wmu and
// x.fmu.
func (x *Index) newIDs(n int, ids []uint32) []uint32 {
	ids = ids[:0]
	for len(ids) < n && len(x.free) > 0 {
		k := len(x.free) - 1
		ids = append(ids, x.free[k])
		x.free = x.free[:k]
	}
	if more := n - len(ids); more > 0 {
		first := len(x.files)
		x.files = slices.Grow(x.files, more)[:first+more]
		clear(x.files[first:])
		for id := first; id < first+more; id++ {
			ids = append(ids, uint32(id))
		}
	}
	return ids
}

// Grow makes room for files more files and keys more keys, so that adding
// them grows no table: a caller that knows how many files a listing found
// calls it before it adds them.
func (x *Index) Grow(files, keys int) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.fmu.Lock()
	x.files = slices.Grow(x.files, files)
	x.names.reserve(files)
	x.fmu.Unlock()
	per := keys / shards
	per += per / 8 // digests spread unevenly over the shards
	for i := range x.shard {
		s := &x.shard[i]
		s.mu.Lock()
		s.reserve(per)
		s.mu.Unlock()
	}
}

// Unknown returns the names the index does not know (see Has), in their
// order, in names' array: one lock for a whole listing's names.
func (x *Index) Unknown(names []string) []string {
	x.fmu.RLock()
	defer x.fmu.RUnlock()
	out := names[:0]
	for _, n := range names {
		if _, ok := x.names.get(x, n); !ok {
			out = append(out, n)
		}
	}
	return out
}
