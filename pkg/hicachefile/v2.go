//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// The v2 interface follows SGLang's HiCacheStorage v2 (batch_exists_v2,
// batch_get_v2, batch_set_v2 and register_mem_host_pool_v2 in
// sgl-project/sglang python/sglang/srt/mem_cache/hicache_storage.py,
// matched at commit 001067f): a hybrid model keeps, per prefix page, a
// page of the KV pool and pages of component pools (mamba, swa, indexer,
// DeepSeek V4's compressed pools). HiCacheFile stores a component page
// under the key "{key}.{pool}", so its old-format file is
// {key}.{pool}{suffix}.bin; the KV pool keeps the plain key.
//
// Here each component pool has a store of its own over the same directory,
// whose suffix is "." + pool + the KV store's suffix: its old-format files
// carry SGLang's component names, its batch files live in their own V1
// directory (v1-{digest}.{pool}{suffix}, the digest covering the pool
// name) and carry the component pool's shape in
// their fingerprint, so a page is only ever served into a pool of the
// shape that wrote it. Each component store holds its own files to
// MaxBytes on its own.

// defaultPool is SGLang's other name for the KV pool's plain keys.
const defaultPool = "__default__"

// componentStores holds a store's component pool stores by name.
type componentStores struct {
	mu sync.Mutex
	m  map[string]*Store
}

// get returns the store of the component pool name, or nil.
func (c *componentStores) get(name string) *Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[name]
}

// all returns every component store.
func (c *componentStores) all() []*Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Store, 0, len(c.m))
	for _, s := range c.m {
		out = append(out, s)
	}
	return out
}

// isKVPool reports whether a v2 pool name means the KV pool.
func isKVPool(name string) bool { return name == KVPool || name == defaultPool }

// RegisterPool registers p as the host pool of the pool called name for
// the v2 interface (SGLang's register_mem_host_pool_v2). KVPool (or
// "__default__") is RegisterMemPoolHost(p). Any other name is a component
// pool, whose pages are stored as SGLang names them ({key}.{name}{suffix}.bin
// for the old format) and may have a shape of their own (hostcache's
// Component kind, say). It may be called again to switch a pool. A name
// that cannot be part of a file name returns ErrInvalidKey; after Close,
// ErrClosed.
func (s *Store) RegisterPool(name string, p *hostcache.Pool) error {
	if isKVPool(name) {
		return s.RegisterMemPoolHost(p)
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if p == nil {
		return fmt.Errorf("%w: nil pool", ErrNoPool)
	}
	if err := checkKeyChars(name); err != nil {
		return fmt.Errorf("%w: pool name %q", ErrInvalidKey, name)
	}
	s.components.mu.Lock()
	defer s.components.mu.Unlock()
	c := s.components.m[name]
	if c == nil {
		cfg := s.cfg
		cfg.component = name
		var err error
		if c, err = New(cfg); err != nil {
			return fmt.Errorf("hicachefile: pool %q: %w", name, err)
		}
		c.parent = s
		if s.components.m == nil {
			s.components.m = make(map[string]*Store)
		}
		s.components.m[name] = c
	}
	return c.RegisterMemPoolHost(p)
}

// closeComponents closes the component stores, for Close.
func (s *Store) closeComponents() error {
	var errs []error
	for _, c := range s.components.all() {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// clearComponents clears the component stores, for Clear.
func (s *Store) clearComponents() error {
	var errs []error
	for _, c := range s.components.all() {
		errs = append(errs, c.Clear())
	}
	return errors.Join(errs...)
}

// haveEach reports, for each key, whether the store holds its page in
// either format, as BatchExists counts a page.
func (s *Store) haveEach(keys []string) []bool {
	have := make([]bool, len(keys))
	if s.enter() != nil {
		return have
	}
	defer s.leave()
	var fp uint64
	pi := s.pool.Load()
	if pi != nil {
		fp = pi.fp
	}
	s.present(keys, fp, have)
	for i, k := range keys {
		switch {
		case s.checkKey(k) != nil:
			have[i] = false
		case !have[i]:
			have[i] = s.oldExists(k, pi)
		}
	}
	return have
}

// componentHave reports, for each key, whether pool's page of it is
// stored: through the pool's store once registered, else by SGLang's
// component file name alone.
func (s *Store) componentHave(pool string, keys []string, kv []bool) []bool {
	if isKVPool(pool) {
		return kv
	}
	if c := s.components.get(pool); c != nil {
		return c.haveEach(keys)
	}
	have := make([]bool, len(keys))
	if s.enter() != nil {
		return have
	}
	defer s.leave()
	for i, k := range keys {
		ck := k + "." + pool
		if s.checkKey(k) == nil && s.checkKey(ck) == nil {
			_, have[i] = s.oldSize(ck)
		}
	}
	return have
}

// BatchExistsV2 returns how much of the prefix keys is usable with every
// transfer's pool (SGLang's HiCacheFile.batch_exists_v2). The KV prefix is
// the leading keys whose KV page is stored (as BatchExists counts them).
// Then, transfer by transfer, the pool's boundary is, for AllPages, the
// first page of the KV prefix without the pool's page; for TrailingPages,
// with t = len(Keys) (at least 1), the longest prefix p of the KV prefix
// whose pages [p-t, p) all have the pool's page, else 0. The usable prefix,
// KVHitPages, is the minimum of them all; once it is 0 the remaining
// transfers are not looked at. Only keys are looked up: a transfer's Keys
// and HostIndices do not change the pages checked. After Close it returns
// ErrClosed.
func (s *Store) BatchExistsV2(keys []string, transfers []Transfer) (TransferResult, error) {
	res := TransferResult{PoolHitPages: map[string]int{}}
	if err := s.enter(); err != nil {
		return res, err
	}
	s.leave()
	kvHave := s.haveEach(keys)
	kv := 0
	for kv < len(keys) && kvHave[kv] {
		kv++
	}
	if kv > 0 {
		res.PoolHitPages[KVPool] = kv
	}
	final := kv
	for _, t := range transfers {
		if final == 0 {
			break
		}
		have := s.componentHave(t.Pool, keys[:kv], kvHave)
		boundary := 0
		if t.HitPolicy == AllPages {
			for boundary < kv && have[boundary] {
				boundary++
			}
		} else {
			boundary = trailingBoundary(have[:kv], max(1, len(t.Keys)))
		}
		if boundary > 0 {
			res.PoolHitPages[t.Pool] = boundary
		}
		final = min(final, boundary)
	}
	res.KVHitPages = final
	return res, nil
}

// trailingBoundary returns the largest p in [1, len(have)] such that have
// holds for every page in [max(0, p-t), p), or 0 if there is none.
func trailingBoundary(have []bool, t int) int {
	run := 0 // pages ending at p that all have it
	best := 0
	for p := 1; p <= len(have); p++ {
		if have[p-1] {
			run++
		} else {
			run = 0
		}
		if run >= min(t, p) {
			best = p
		}
	}
	return best
}

// BatchGetV2 reads each transfer's pages from storage into its pool's host
// slots (SGLang's batch_get_v2) and returns, per pool name, one bool per
// key: true where the slots now hold the page. A pool's pages come from
// its batch files, verified as BatchGetV1's are, or else from SGLang's
// old-format files ({key}.{pool}{suffix}.bin for a component pool). A
// transfer whose HostIndices are not len(Keys) x the pool's PageSize, or
// whose slots repeat, fails alone: all false. A transfer of a pool not
// registered is all false too, and ErrNoPool is in the error. Other errors
// (ErrClosed, running out of descriptors) are joined in the error; the
// map always has every transfer's pool. Two transfers of one pool: the
// later one's results are kept.
func (s *Store) BatchGetV2(transfers []Transfer) (map[string][]bool, error) {
	return s.batchV2(transfers, (*Store).BatchGetV1)
}

// BatchSetV2 writes each transfer's pages from its pool's host slots to
// storage (SGLang's batch_set_v2) and returns, per pool name, one bool per
// key: true where the page is stored. Pages are written as BatchSetV1
// writes them: batch files of the pool's own store, checksummed and
// carrying the pool's shape; a key already stored for that pool is not
// written again. Failures are reported as BatchGetV2 reports them; a
// page refused (see ErrRefused) is false without an error.
func (s *Store) BatchSetV2(transfers []Transfer) (map[string][]bool, error) {
	return s.batchV2(transfers, (*Store).BatchSetV1)
}

// batchV2 runs op, BatchGetV1 or BatchSetV1, for each transfer on its
// pool's store.
func (s *Store) batchV2(transfers []Transfer, op func(*Store, []string, []int64) ([]bool, error)) (map[string][]bool, error) {
	out := make(map[string][]bool, len(transfers))
	if err := s.enter(); err != nil {
		for _, t := range transfers {
			out[t.Pool] = make([]bool, len(t.Keys))
		}
		return out, err
	}
	s.leave()
	var errs []error
	for _, t := range transfers {
		ok := make([]bool, len(t.Keys))
		out[t.Pool] = ok
		st := s
		if !isKVPool(t.Pool) {
			st = s.components.get(t.Pool)
		}
		var pi *poolInfo
		if st != nil {
			pi = st.pool.Load()
		}
		switch {
		case pi == nil:
			errs = append(errs, fmt.Errorf("%w: pool %q", ErrNoPool, t.Pool))
			continue
		case len(t.HostIndices) != len(t.Keys)*pi.ps:
			continue // this transfer fails alone
		}
		got, err := op(st, t.Keys, t.HostIndices)
		if err != nil && errors.Is(err, ErrLength) {
			continue // repeated slots: this transfer fails alone
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("hicachefile: pool %q: %w", t.Pool, err))
		}
		copy(ok, got)
	}
	return out, errors.Join(errs...)
}
