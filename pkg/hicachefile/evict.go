//go:build linux

package hicachefile

import (
	"errors"
	"math"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/lru"
	"golang.org/x/sys/unix"
)

// evict removes least recently used files, once the store's files exceed
// MaxBytes, until they take at most MaxBytes x EvictionRatio, and until the
// file system has Config.MinFreeBytes free,
// sparing the files in protect (those the calling write just made). A file that cannot be removed (a read-only or NFS file
// system, say) is counted in Stats.EvictErrors and passed over: it never
// stops the files behind it from going.
func (s *Store) evict(protect map[lru.ID]bool) {
	if !s.lru.On() {
		return
	}
	limit, target := s.maxBytes.Load(), int64(math.MaxInt64)
	if limit == 0 {
		limit = math.MaxInt64
	} else {
		target = s.evictTarget(limit)
	}
	short := func() int64 {
		if s.cfg.MinFreeBytes == 0 {
			return 0
		}
		return s.cfg.MinFreeBytes - s.freeBytes()
	}
	need := short()
	fam := s.family()
	defer fam.leave()
	if (fam.used() > limit || need > 0) && s.lru.ReclaimDue() {
		// Dead writers' temp files go before anyone's pages.
		if s.reclaimTemps() == nil && need > 0 {
			need = short()
		}
	}
	// Over the bound, down to the ratio: SGLang's _evict_locked.
	if len(fam.others) > 0 {
		fam.evict(s, limit, target, protect)
	} else if s.lru.Over(limit) {
		for {
			victims := s.lru.Victims(target, protect)
			if len(victims) == 0 {
				break
			}
			s.remove(victims)
		}
	}
	if need > 0 {
		s.makeRoom(need, protect)
	}
}

// freeBytes returns the free space of Dir's file system available to this
// user, or MaxInt64 when statfs fails.
func (s *Store) freeBytes() int64 {
	var st unix.Statfs_t
	if err := s.sys.Fstatfs(s.topfd(), &st); err != nil {
		s.stats.errors.Add(1)
		return math.MaxInt64
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// makeRoom removes least recently used files, sparing protect, until need
// bytes of them are gone or none is left, and reports whether it removed
// any: for MinFreeBytes, and for a write that met a full disk.
func (s *Store) makeRoom(need int64, protect map[lru.ID]bool) bool {
	if !s.lru.On() {
		return false
	}
	if s.lru.ReclaimDue() {
		_ = s.reclaimTemps() // may free enough; pages go below all the same
	}
	fam := s.family()
	defer fam.leave()
	if len(fam.others) > 0 {
		freed := int64(0)
		return fam.removeOldest(s, protect, func(f lru.File) bool { freed += f.Size; return freed < need }) > 0
	}
	victims := s.lru.Oldest(need, protect)
	s.remove(victims)
	return len(victims) > 0
}

// recount brings the count of the store's files up to date with listings
// of Dir (top) and of the V1 directory (v1) just made: a counted file that
// neither holds and that is gone when looked up (another store's Clear or
// eviction removed it) leaves the count, and an old-format file of the
// store's suffix that it does not count (another process wrote it) joins
// it, as used at its modification time (clamped to now). Eviction calls it
// through reclaimTemps, at most once per lru.ReclaimEvery, so that MaxBytes
// bounds the files there are.
func (s *Store) recount(top, v1 []string) {
	if !s.lru.On() {
		return
	}
	listed := make(map[lru.ID]bool, len(top)+len(v1))
	for _, n := range top {
		if s.isOldName(n) {
			listed[lru.ID{Old: true, Name: n}] = true
		}
	}
	for _, n := range v1 {
		if s.isBatchName(n) {
			listed[lru.ID{Name: n}] = true
		}
	}
	var st unix.Stat_t
	for _, id := range s.lru.Unlisted(listed) {
		dirfd := s.topfd()
		if !id.Old {
			dirfd = s.v1fd()
		}
		if unix.Fstatat(dirfd, id.Name, &st, unix.AT_SYMLINK_NOFOLLOW) != unix.ENOENT {
			continue // written since the listing, or not known gone
		}
		if id.Old {
			s.lru.Forget(id)
		} else {
			s.forgetBatch(id.Name)
		}
	}
	for id := range listed {
		if !id.Old || s.lru.Counts(id) {
			continue
		}
		if unix.Fstatat(s.topfd(), id.Name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
			s.lru.Track(id, st.Size, st.Mtim.Nano())
		}
	}
}

// noSpaceRetries bounds how many times a write that meets ENOSPC or EDQUOT
// makes room and tries again: another process may take the space freed
// before the retry.
const noSpaceRetries = 3

// isNoSpace reports whether err says the file system or the user's quota
// is full.
func isNoSpace(err error) bool { return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) }

// remove deletes evicted files, counting them.
func (s *Store) remove(victims []lru.File) {
	for _, f := range victims {
		dirfd := s.topfd()
		if !f.ID.Old {
			dirfd = s.v1fd()
			// Forget the pages first, so that no lookup finds them while
			// the file goes.
			s.idx.Forget(f.ID.Name)
		}
		switch err := s.sys.Unlinkat(dirfd, f.ID.Name, 0); err {
		case nil:
			s.stats.evicted.Add(1)
			s.stats.evictedBytes.Add(f.Size)
		case unix.ENOENT:
			// Already gone (another store's Clear or eviction): not an
			// eviction of this store's, and no longer counted.
		default:
			// Still there and still taking space: the next round takes
			// more files instead.
			s.stats.evictErrors.Add(1)
			s.lru.MarkStuck(f)
		}
	}
}

// storeFamily is a store with the other stores that share its MaxBytes:
// the store a component pool's store was registered with, and that
// store's other component pool stores. SGLang's backend has one evictor
// over every file it writes, component pages included.
type storeFamily struct {
	self   *Store
	others []*Store // entered with tryEnter; leave releases them
}

// family returns s with the open stores that share its MaxBytes. It never
// waits for one (a Close in progress there may be waiting for this very
// call): a store it cannot enter at once is left out of this round.
func (s *Store) family() storeFamily {
	f := storeFamily{self: s}
	root := s
	if s.parent != nil {
		root = s.parent
	}
	members := root.components.all()
	if root != s {
		members = append(members, root)
	}
	for _, m := range members {
		if m != s && m.lru.On() && m.tryEnter() {
			f.others = append(f.others, m)
		}
	}
	return f
}

// leave ends the calls family entered.
func (f storeFamily) leave() {
	for _, m := range f.others {
		m.leave()
	}
}

// used returns the bytes counted against MaxBytes across the family.
func (f storeFamily) used() int64 {
	n := f.self.lru.Used()
	for _, m := range f.others {
		n += m.lru.Used()
	}
	return n
}

// evict removes the family's least recently used files, whichever store
// holds them, once the family is over limit, until it is at most target,
// sparing protect (the files of s's calling write).
func (f storeFamily) evict(s *Store, limit, target int64, protect map[lru.ID]bool) {
	if f.used() <= limit {
		return
	}
	f.removeOldest(s, protect, func(lru.File) bool { return f.used() > target })
}

// removeOldest removes the family's least recently used files one by one,
// whichever store holds them, sparing protect (the files of s's calling
// write), while more returns true for the file just removed (and before
// the first, when more(zero File) is true); it returns how many it
// removed.
func (f storeFamily) removeOldest(s *Store, protect map[lru.ID]bool, more func(lru.File) bool) int {
	removed := 0
	for ok := more(lru.File{}); ok; {
		var from *Store
		var oldest lru.File
		for _, m := range append([]*Store{f.self}, f.others...) {
			p := protect
			if m != s {
				p = nil
			}
			if c, ok := m.lru.Peek(p); ok && (from == nil || c.Use < oldest.Use) {
				from, oldest = m, c
			}
		}
		if from == nil {
			break
		}
		if v, took := from.lru.Take(oldest.ID); took {
			from.remove([]lru.File{v})
			removed++
			ok = more(v)
		}
	}
	return removed
}
