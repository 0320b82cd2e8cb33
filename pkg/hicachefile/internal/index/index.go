// Package index is the in-memory index of a hicachefile store: which batch
// file holds a copy of which key, for millions of pages at a few dozen bytes
// each and no garbage-collector work per page.
//
// A key is kept as a 64-bit keyed digest, never as its string: an entry is
// the digest, an integer file id, the offset of the key's entry in that
// file's own on-disk index and the number of its page in the file, 20 bytes
// in a table without pointers. Two keys
// may share a digest, so a lookup returns candidates, and the reader checks
// the full key against the file's own index before it trusts a page (see
// hicachefile's BatchGetV1). Per file the index keeps its name, caller
// metadata and the digests of its keys, to forget them all when the file
// goes.
//
// An Index is safe for concurrent use by multiple goroutines. Its table is
// split into shards, each with its own lock, so lookups of different keys
// from several goroutines do not serialise on one mutex.
package index

import (
	"hash/maphash"
	"sync"
)

// Meta is what the caller records about a batch file: it is handed back
// with every lookup and is opaque to the index, except FP, which Lookup
// matches against.
type Meta struct {
	// FP is a fingerprint of what wrote the file (its pool's shape and
	// identity). Lookup prefers copies whose FP matches the one asked for.
	FP uint64
	// IndexOff is the offset of the file's on-disk index.
	IndexOff int64
	// PageLen is the length of the file's pages.
	PageLen int64
	// Ino is the inode number of the file the entries came from: another
	// file renamed over it has another.
	Ino uint64
	// Tag is the checksum that ends the file's trailer. A reader compares
	// it with the file's last four bytes, so that another file renamed in
	// place of this one (another model's or rank's, with the same keys) is
	// never taken for it.
	Tag uint32
	// Size is the file's size in bytes: a reader that finds the file
	// larger knows it is another one without reading it.
	Size int64
}

// Entry is one key of a file being added: its key, the offset of its entry
// in the file's on-disk index, relative to Meta.IndexOff, and the number of
// its page: the page starts at Page*Meta.PageLen.
type Entry struct {
	// Key is the page's key.
	Key string
	// Ent is the offset of the key's entry in the file's on-disk index,
	// relative to Meta.IndexOff.
	Ent uint32
	// Page is the number of the key's page in the file.
	Page uint32
}

// Ref names a copy of a key: the file that holds it, the offset of the
// key's entry in that file's on-disk index, and the number of its page.
// File 0 names no copy.
type Ref struct {
	// File is the id of the file that holds the copy; 0 names no copy.
	File uint32
	// Ent is the offset of the key's entry in that file's on-disk index,
	// relative to its Meta.IndexOff.
	Ent uint32
	// Page is the number of the key's page in that file.
	Page uint32
	// Gen is the generation of the file id when the copy was found. File
	// ids are reused once their file is forgotten; FileOf and Drop compare
	// Gen with the id's current one, so that a Ref found before its file
	// went never names the file that took its id after.
	Gen uint32
}

// file is what the index keeps per batch file.
type file struct {
	name string
	meta Meta
	los  []uint32 // low half of the digest of each key added, to find them when the file goes
	live bool
	gen  uint32 // the id's generation: a fresh one each time the id is taken
}

// shardBits is log2 of the number of table shards. Calls visit the shards
// their keys fall in once each, so fewer shards mean fewer lock operations
// per call, and more mean less waiting between goroutines.
const shardBits = 4

// shards is the number of table shards.
const shards = 1 << shardBits

// Index maps key digests to copies in batch files. Per page it keeps a
// 20-byte slot in a table at most 3/4 full, and 4 bytes in its file's list:
// between 31 and 57 bytes, depending on how full the tables are. The zero value is not
// usable; call New.
type Index struct {
	seed maphash.Seed

	wmu   sync.Mutex // serialises Add, Forget and Reset, so a name is added or forgotten whole
	fmu   sync.RWMutex
	files []file    // by file id; id 0 is never used
	free  []uint32  // ids of forgotten files, for reuse
	gen   uint32    // the last generation given to an id; never reset
	names nameTable // live file name -> id

	shard [shards]shard
}

// New returns an empty index.
func New() *Index {
	x := &Index{seed: maphash.MakeSeed()}
	x.Reset()
	return x
}

// Hash returns the digest the index keeps for key.
func (x *Index) Hash(key string) uint64 { return maphash.String(x.seed, key) }

// HashBytes returns the digest the index keeps for the key whose bytes are
// key, without converting it to a string.
func (x *Index) HashBytes(key []byte) uint64 { return maphash.Bytes(x.seed, key) }

// shardOf returns the shard of a digest: its top bits, so that the low bits
// stay free for the slot within the shard.
func (x *Index) shardOf(h uint64) *shard { return &x.shard[shardNo(h)] }

// shardNo returns the number of the shard of a digest.
func shardNo(h uint64) int { return int(h >> (64 - shardBits)) }

// byShard returns the positions of hashes grouped by shard, and where each
// shard's group ends: group k is order[ends[k-1]:ends[k]]. order is
// reused when it has room.
func byShard(hashes []uint64, order []int32) ([]int32, [shards]int32) {
	var ends [shards]int32
	for _, h := range hashes {
		ends[shardNo(h)]++
	}
	var next [shards]int32
	sum := int32(0)
	for k := range ends {
		next[k] = sum
		sum += ends[k]
		ends[k] = sum
	}
	if cap(order) < len(hashes) {
		order = make([]int32, len(hashes))
	}
	order = order[:len(hashes)]
	for i, h := range hashes {
		k := shardNo(h)
		order[next[k]] = int32(i)
		next[k]++
	}
	return order, ends
}

// orderPool holds the grouping buffers of Lookup.
var orderPool = sync.Pool{New: func() any { return new([]int32) }}

// Reset forgets every file and key. The key tables keep their size, to be
// filled again without growing.
func (x *Index) Reset() {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.fmu.Lock()
	defer x.fmu.Unlock()
	x.files = make([]file, 1)
	x.free = nil
	x.names.reset()
	for i := range x.shard {
		s := &x.shard[i]
		s.mu.Lock()
		s.reset()
		s.mu.Unlock()
	}
}

// Add records the batch file name with meta and its keys, replacing what
// the index held of a file of that name. entries may be empty: the file is
// then known (Has reports it) but holds no key, as for a file whose index
// failed its checks. hashes, when not nil, holds each entry's digest
// (x.Hash of its key) so that Add need not compute them; Add keeps it.
func (x *Index) Add(name string, meta Meta, entries []Entry, hashes []uint64) {
	if hashes == nil {
		hashes = make([]uint64, len(entries))
		for i, e := range entries {
			hashes[i] = x.Hash(e.Key)
		}
	}
	ents := make([]uint32, len(entries))
	pages := make([]uint32, len(entries))
	for i, e := range entries {
		ents[i], pages[i] = e.Ent, e.Page
	}
	x.AddHashed(name, meta, hashes, ents, pages)
}

// AddHashed is Add for a caller that has the digests (x.Hash or
// x.HashBytes of each key), entry offsets and page numbers already, in three
// slices of one length. A file of the same name is replaced
// without a moment in which lookups find neither.
func (x *Index) AddHashed(name string, meta Meta, hashes []uint64, ents, pages []uint32) {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	x.fmu.Lock()
	var one [1]uint32
	id := x.newIDs(1, one[:])[0]
	x.files[id] = file{name: name, meta: meta, los: lows(hashes), gen: x.nextGen()}
	x.fmu.Unlock()
	// The file turns live only when every entry is in, so a lookup never
	// sees half a file.
	x.insertKeys(hashes, nil, id, ents, pages)
	x.fmu.Lock()
	old, replaced := x.names.set(x, name, id)
	x.files[id].live = true
	x.fmu.Unlock()
	if replaced {
		x.drop(old)
	}
}

// lows returns the low half of each of hashes, what a file keeps to find
// its keys when it goes.
func lows(hashes []uint64) []uint32 {
	los := make([]uint32, len(hashes))
	for i, h := range hashes {
		los[i] = uint32(h)
	}
	return los
}

// insertKeys inserts the keys hashes, with their ents and pages, shard by
// shard, as copies held by the file ids[i], or by id when ids is nil. The
// caller holds x.wmu, and turns the files live after.
func (x *Index) insertKeys(hashes []uint64, ids []uint32, id uint32, ents, pages []uint32) {
	buf := orderPool.Get().(*[]int32)
	order, ends := byShard(hashes, *buf)
	start := int32(0)
	for k := range ends {
		if ends[k] == start {
			continue
		}
		group := order[start:ends[k]]
		s := &x.shard[k]
		s.mu.Lock()
		s.reserve(len(group))
		_ = s.touch(hashes, group)
		for _, i := range group {
			if ids != nil {
				id = ids[i]
			}
			s.insert(makeSlot(hashes[i], id, ents[i], pages[i]))
		}
		s.mu.Unlock()
		start = ends[k]
	}
	*buf = order
	orderPool.Put(buf)
}

// Has reports whether the index knows the file name.
func (x *Index) Has(name string) bool {
	x.fmu.RLock()
	defer x.fmu.RUnlock()
	_, ok := x.names.get(x, name)
	return ok
}

// Files calls fn with the name of every file the index knows.
func (x *Index) Files(fn func(name string)) {
	x.fmu.RLock()
	names := make([]string, 0, x.names.count)
	x.names.each(func(id uint32) { names = append(names, x.files[id].name) })
	x.fmu.RUnlock()
	for _, n := range names {
		fn(n)
	}
}

// Len returns the number of key copies the index holds.
func (x *Index) Len() int {
	n := 0
	for i := range x.shard {
		s := &x.shard[i]
		s.mu.RLock()
		n += s.count
		s.mu.RUnlock()
	}
	return n
}

// File returns the name and metadata of the live file id.
func (x *Index) File(id uint32) (name string, meta Meta, ok bool) {
	x.fmu.RLock()
	defer x.fmu.RUnlock()
	if int(id) >= len(x.files) || !x.files[id].live {
		return "", Meta{}, false
	}
	f := &x.files[id]
	return f.name, f.meta, true
}

// FileOf returns the name and metadata of the file that holds the copy r,
// as File does, unless that file has been forgotten since r was found (its
// id may name another file by now).
func (x *Index) FileOf(r Ref) (name string, meta Meta, ok bool) {
	x.fmu.RLock()
	defer x.fmu.RUnlock()
	if r.File == 0 || int(r.File) >= len(x.files) {
		return "", Meta{}, false
	}
	f := &x.files[r.File]
	if !f.live || f.gen != r.Gen {
		return "", Meta{}, false
	}
	return f.name, f.meta, true
}

// nextGen returns a new generation for a file id being taken. The caller
// holds x.fmu.
func (x *Index) nextGen() uint32 {
	x.gen++
	return x.gen
}

// Forget forgets the file name and every copy it holds. It reports whether
// the index knew the file.
func (x *Index) Forget(name string) bool {
	x.wmu.Lock()
	defer x.wmu.Unlock()
	return x.forget(name)
}

// forget is Forget; the caller holds x.wmu.
func (x *Index) forget(name string) bool {
	x.fmu.Lock()
	id, ok := x.names.del(x, name)
	x.fmu.Unlock()
	if ok {
		x.drop(id)
	}
	return ok
}

// drop removes the entries of file id, whose name no longer leads to it,
// and frees the id. The caller holds x.wmu.
func (x *Index) drop(id uint32) {
	x.fmu.Lock()
	f := x.files[id]
	x.files[id] = file{} // not live: lookups skip its entries from now on
	x.fmu.Unlock()
	// Only the low halves of the digests are kept, which do not say the
	// shard: look in each.
	if len(f.los) > 0 {
		for k := range x.shard {
			s := &x.shard[k]
			s.mu.Lock()
			for _, lo := range f.los {
				s.removeLo(lo, id)
			}
			s.mu.Unlock()
		}
	}
	x.fmu.Lock()
	x.free = append(x.free, id)
	x.fmu.Unlock()
}

// Drop forgets one copy: the entry of the key whose digest is hash at ref,
// after its page proved bad or gone. Other copies of the key stay.
// A ref whose file has been forgotten since it was found drops nothing:
// its id may hold another file's copies by now.
func (x *Index) Drop(hash uint64, ref Ref) {
	x.fmu.RLock()
	defer x.fmu.RUnlock()
	if ref.File == 0 || int(ref.File) >= len(x.files) || x.files[ref.File].gen != ref.Gen {
		return
	}
	s := x.shardOf(hash)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remove(hash, func(sl slot) bool { return sl.file == ref.File && sl.ent == ref.Ent && sl.page == ref.Page })
}

// Lookup finds a copy of each key, whose digest is hashes[i], and stores
// it in refs[i] (File 0 when the index holds none). It prefers a copy whose
// file's Meta.FP is fp; with no such copy it returns another, so that the
// caller can tell a copy it cannot use from a miss. skip, when not nil,
// rejects copies the caller already tried. It reports how many keys it
// found. Lookup allocates nothing.
func (x *Index) Lookup(hashes []uint64, fp uint64, refs []Ref, skip func(i int, r Ref) bool) int {
	return x.lookup(hashes, fp, refs, nil, skip)
}

// LookupMeta is Lookup, with no skip, that also stores the metadata of
// each copy's file in metas[i], under the same locks: what Lookup and
// Meta do in two passes.
func (x *Index) LookupMeta(hashes []uint64, fp uint64, refs []Ref, metas []Meta) int {
	return x.lookup(hashes, fp, refs, metas, nil)
}

// lookup is Lookup and LookupMeta: it visits each shard the keys fall in
// once, under its read lock, and fills metas when it is not nil. From
// lockAllMin keys on, when nearly every shard holds some of them, it
// read-locks every shard at once instead and takes the keys in their own
// order (lookupAll).
func (x *Index) lookup(hashes []uint64, fp uint64, refs []Ref, metas []Meta, skip func(i int, r Ref) bool) int {
	if len(hashes) >= lockAllMin {
		return x.lookupAll(hashes, fp, refs, metas, skip)
	}
	found := 0
	var buf [lockAllMin]int32 // fewer keys than lockAllMin: no pooled buffer
	order, ends := byShard(hashes, buf[:])
	x.fmu.RLock()
	start := int32(0)
	for k := range ends {
		if ends[k] == start {
			continue
		}
		s := &x.shard[k]
		s.mu.RLock()
		_ = s.touch(hashes, order[start:ends[k]])
		for _, i := range order[start:ends[k]] {
			r := x.find(s, hashes[i], fp, int(i), skip)
			refs[i] = r
			if r.File != 0 {
				if metas != nil {
					metas[i] = x.files[r.File].meta
				}
				found++
			}
		}
		s.mu.RUnlock()
		start = ends[k]
	}
	x.fmu.RUnlock()
	return found
}

// lockAllMin is the number of keys from which a lookup read-locks every
// shard at once: by then its keys fall in nearly every shard anyway, and
// taking them in their own order saves grouping them by shard.
const lockAllMin = 2 * shards

// lookupAll is lookup with every shard read-locked at once, in shard order
// (writers hold one shard at a time, so no lock order can deadlock), and
// the keys taken in their own order, with no grouping by shard.
func (x *Index) lookupAll(hashes []uint64, fp uint64, refs []Ref, metas []Meta, skip func(i int, r Ref) bool) int {
	x.fmu.RLock()
	for k := range x.shard {
		x.shard[k].mu.RLock()
	}
	_ = x.touchAll(hashes)
	found := 0
	for i, h := range hashes {
		r := x.find(x.shardOf(h), h, fp, i, skip)
		refs[i] = r
		if r.File != 0 {
			if metas != nil {
				metas[i] = x.files[r.File].meta
			}
			found++
		}
	}
	for k := range x.shard {
		x.shard[k].mu.RUnlock()
	}
	x.fmu.RUnlock()
	return found
}

// touchAll is shard.touch for keys of every shard: it loads the home slot
// of each of hashes in a table larger than touchMin, with no dependence
// between the loads, so that the probes that follow find them in cache.
// The caller holds every shard's lock.
//
//go:noinline
func (x *Index) touchAll(hashes []uint64) uint32 {
	var sum uint32
	for _, h := range hashes {
		s := x.shardOf(h)
		if len(s.slots) > touchMin {
			sum += s.slots[h&s.mask].file
		}
	}
	return sum
}

// find returns the copy of the key with digest h that Lookup would. The
// caller holds x.fmu and s.mu shared.
func (x *Index) find(s *shard, h uint64, fp uint64, i int, skip func(i int, r Ref) bool) Ref {
	best := Ref{}
	for p := s.start(h); ; p = (p + 1) & s.mask {
		sl := &s.slots[p]
		if sl.file == 0 {
			return best
		}
		if sl.lo != uint32(h) || sl.hi != uint32(h>>32) || !x.files[sl.file].live {
			continue
		}
		r := Ref{File: sl.file, Ent: sl.ent, Page: sl.page, Gen: x.files[sl.file].gen}
		if skip != nil && skip(i, r) {
			continue
		}
		if x.files[sl.file].meta.FP == fp {
			return r
		}
		if best.File == 0 {
			best = r
		}
	}
}

// Meta returns the metadata of the files of refs, refs[i] into metas[i],
// under one lock: what a caller needs after Lookup. A ref to a file that
// has gone since gets File 0.
func (x *Index) Meta(refs []Ref, metas []Meta) {
	x.fmu.RLock()
	defer x.fmu.RUnlock()
	for i, r := range refs {
		if r.File == 0 {
			continue
		}
		if int(r.File) >= len(x.files) || !x.files[r.File].live || x.files[r.File].gen != r.Gen {
			refs[i].File = 0
			continue
		}
		metas[i] = x.files[r.File].meta
	}
}

// MetaOf returns the metadata of the live file name.
func (x *Index) MetaOf(name string) (Meta, bool) {
	x.fmu.RLock()
	defer x.fmu.RUnlock()
	id, ok := x.names.get(x, name)
	if !ok || !x.files[id].live {
		return Meta{}, false
	}
	return x.files[id].meta, true
}
