//go:build linux

package hicachefile

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// evicting reports whether c configures eviction: a MaxBytes or a
// MinFreeBytes. c has its defaults filled in.
func (c Config) evicting() bool { return c.MaxBytes > 0 || c.MinFreeBytes > 0 }

// owner reports whether a store of c owns its files (see
// Config.StorageOwner): nil follows SGLang's rule, under which every rank
// of an MHA model owns the files of its own suffix, and of an MLA model
// only TP rank 0 (HiCacheFile at 001067f hands its evictor tp_rank and
// is_mla_model; LRUFileEvictor at 09d1a69 takes is_storage_owner from the
// controller, which picks that same writer per shard).
func (c Config) owner() bool {
	if c.StorageOwner != nil {
		return *c.StorageOwner
	}
	return !c.IsMLA || c.TPRank == 0
}

// readOnly reports whether a store of c only reads: eviction is
// configured and the rank does not own the files.
func (c Config) readOnly() bool { return c.evicting() && !c.owner() }

// admit reports whether the store takes a new page of size bytes: not when
// it only reads (a rank that does not own its files while eviction is
// configured), nor when the page is larger than MaxBytes, as SGLang's
// LRUFileEvictor.reserve refuses. The error wraps ErrRefused.
func (s *Store) admit(size int64) error {
	if s.cfg.readOnly() {
		return fmt.Errorf("%w: this rank is not the storage owner and eviction is configured", ErrRefused)
	}
	if limit := s.maxBytes.Load(); limit > 0 && size > limit {
		return fmt.Errorf("%w: a page of %d bytes exceeds MaxBytes %d", ErrRefused, size, limit)
	}
	return nil
}

// roomFor reports whether n more bytes leave the file system's free space at
// MinFreeBytes or above, evicting least recently used files to make it so,
// as SGLang's LRUFileEvictor refuses a write whose free-space watermark it
// cannot meet. Without MinFreeBytes, or on a rank that does not evict, it
// is always true; so it is when statfs fails.
func (s *Store) roomFor(n int64) bool {
	if !s.lru.On() || s.cfg.MinFreeBytes == 0 {
		return true
	}
	short := func() int64 { return s.cfg.MinFreeBytes - (s.freeBytes() - n) }
	if short() <= 0 {
		return true
	}
	s.makeRoom(short(), nil)
	return short() <= 0
}

// MaxBytes returns the bound on the store's bytes in effect: Config.MaxBytes
// (or its environment default), clamped at New to the size of Dir's file
// system less MinFreeBytes, as SGLang's LRUFileEvictor clamps max_size.
// 0 means no bound.
func (s *Store) MaxBytes() int64 { return s.maxBytes.Load() }

// clampMaxBytes sets the bound in effect from the configured one, clamped
// to the file system's size less MinFreeBytes. When statfs fails the bound
// stays as configured.
func (s *Store) clampMaxBytes() {
	limit := s.cfg.MaxBytes
	var st unix.Statfs_t
	if limit > 0 && s.sys.Fstatfs(s.topfd(), &st) == nil {
		unit := int64(st.Frsize)
		if unit <= 0 {
			unit = int64(st.Bsize)
		}
		total := int64(st.Blocks) * unit
		if safe := max(0, total-s.cfg.MinFreeBytes); limit > safe {
			limit = safe
		}
	}
	s.maxBytes.Store(limit)
}

// evictTarget returns the total eviction brings the store's bytes down to
// once they exceed limit: limit x EvictionRatio, truncated as SGLang's
// int(max_size_bytes * eviction_ratio) is.
func (s *Store) evictTarget(limit int64) int64 {
	return int64(float64(limit) * s.cfg.EvictionRatio)
}
