package index

// nameTable maps the names of the index's files to their ids: an
// open-addressing table with linear probing of name digests and ids, 16
// bytes a slot and no pointers, so that the garbage collector never scans
// it however many files a store has, and growing it rehashes no string.
// The name itself is the file's (Index.files[id].name), compared when
// digests match. It is guarded by Index.fmu.
type nameTable struct {
	slots []nameSlot
	mask  uint64
	count int
}

// nameSlot is one file: the digest of its name, and its id (0: empty).
type nameSlot struct {
	hash uint64
	id   uint32
}

// minNameSlots is the size of an empty table.
const minNameSlots = 16

// reset empties t, back to minNameSlots slots (reserve makes room for a
// listing's names).
func (t *nameTable) reset() {
	t.slots = make([]nameSlot, minNameSlots)
	t.mask = minNameSlots - 1
	t.count = 0
}

// find returns the position of name, whose digest is h, or of the empty
// slot that ends its probe run.
func (t *nameTable) find(x *Index, h uint64, name string) (uint64, bool) {
	p := h & t.mask
	for {
		sl := &t.slots[p]
		if sl.id == 0 {
			return p, false
		}
		if sl.hash == h && x.files[sl.id].name == name {
			return p, true
		}
		p = (p + 1) & t.mask
	}
}

// get returns the id of name.
func (t *nameTable) get(x *Index, name string) (uint32, bool) {
	p, ok := t.find(x, x.Hash(name), name)
	return t.slots[p].id, ok
}

// set maps name to id, and returns the id it mapped to before, if any.
// x.files[id].name must be name already.
func (t *nameTable) set(x *Index, name string, id uint32) (old uint32, replaced bool) {
	h := x.Hash(name)
	p, ok := t.find(x, h, name)
	if ok {
		old = t.slots[p].id
		t.slots[p].id = id
		return old, true
	}
	if (t.count+1)*4 > len(t.slots)*3 {
		t.resize(2 * len(t.slots))
		p, _ = t.find(x, h, name)
	}
	t.slots[p] = nameSlot{hash: h, id: id}
	t.count++
	return 0, false
}

// del removes name and returns the id it mapped to.
func (t *nameTable) del(x *Index, name string) (uint32, bool) {
	p, ok := t.find(x, x.Hash(name), name)
	if !ok {
		return 0, false
	}
	id := t.slots[p].id
	t.count--
	// Backward-shift deletion, as in shard.deleteAt.
	hole := p
	for q := (p + 1) & t.mask; t.slots[q].id != 0; q = (q + 1) & t.mask {
		home := t.slots[q].hash & t.mask
		if (q-home)&t.mask >= (q-hole)&t.mask {
			t.slots[hole] = t.slots[q]
			hole = q
		}
	}
	t.slots[hole] = nameSlot{}
	if t.count*8 < len(t.slots) && len(t.slots) > minNameSlots {
		t.resize(len(t.slots) / 2)
	}
	return id, true
}

// reserve grows t, once, to take n more names without growing again.
func (t *nameTable) reserve(n int) {
	size := len(t.slots)
	for (t.count+n)*4 > size*3 {
		size *= 2
	}
	if size > len(t.slots) {
		t.resize(size)
	}
}

// resize moves t to size slots, a power of two, by the stored digests.
func (t *nameTable) resize(size int) {
	old := t.slots
	t.slots = make([]nameSlot, size)
	t.mask = uint64(size - 1)
	for _, sl := range old {
		if sl.id == 0 {
			continue
		}
		p := sl.hash & t.mask
		for t.slots[p].id != 0 {
			p = (p + 1) & t.mask
		}
		t.slots[p] = sl
	}
}

// each calls fn with the id of every name in t.
func (t *nameTable) each(fn func(id uint32)) {
	for _, sl := range t.slots {
		if sl.id != 0 {
			fn(sl.id)
		}
	}
}
