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
	if (s.lru.Over(limit) || need > 0) && s.lru.ReclaimDue() {
		// Dead writers' temp files go before anyone's pages.
		if s.reclaimTemps() == nil && need > 0 {
			need = short()
		}
	}
	// Over the bound, down to the ratio: SGLang's _evict_locked.
	for over := s.lru.Over(limit); over; {
		victims := s.lru.Victims(target, protect)
		if len(victims) == 0 {
			break
		}
		s.remove(victims)
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
	victims := s.lru.Oldest(need, protect)
	s.remove(victims)
	return len(victims) > 0
}

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
		case nil, unix.ENOENT:
			s.stats.evicted.Add(1)
			s.stats.evictedBytes.Add(f.Size)
		default:
			// Still there and still taking space: the next round takes
			// more files instead.
			s.stats.evictErrors.Add(1)
			s.lru.MarkStuck(f)
		}
	}
}
