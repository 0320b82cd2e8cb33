//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// Version is the library's version; the Python package refuses a library
// whose version is not its own.
const Version = "0.1.0"

// ABI is the version of the C API, the signatures of the hc_ functions:
// raised whenever one changes, and checked by the Python package
// (python/hicache_go/_lib.py ABI), so that a stale library is refused
// instead of called with the wrong arguments.
const ABI = 1

// maxCount bounds every count a caller passes, so that a garbage count is
// an error, never an attempt to read that much memory.
const maxCount = 1 << 40

// cBytes returns n bytes at p as a slice, without copying. The slice is
// valid only during the call that received p.
func cBytes(p unsafe.Pointer, n int64) ([]byte, error) {
	if n < 0 || n > maxCount || (p == nil && n > 0) {
		return nil, fmt.Errorf("%w: %d bytes at %p", errArgument, n, p)
	}
	if n == 0 {
		return nil, nil
	}
	return unsafe.Slice((*byte)(p), n), nil
}

// cInt64s returns n int64s at p as a slice, without copying.
func cInt64s(p unsafe.Pointer, n int64) ([]int64, error) {
	if n < 0 || n > maxCount/8 || (p == nil && n > 0) {
		return nil, fmt.Errorf("%w: %d int64s at %p", errArgument, n, p)
	}
	if n == 0 {
		return nil, nil
	}
	return unsafe.Slice((*int64)(p), n), nil
}

// cKeys copies n keys out of buf, key i being lens[i] bytes following key
// i-1, into Go strings that share one allocation.
func cKeys(buf, lens unsafe.Pointer, n int64) ([]string, error) {
	ls, err := cInt64s(lens, n)
	if err != nil {
		return nil, err
	}
	total := int64(0)
	for i, l := range ls {
		if l < 0 || l > maxCount-total {
			return nil, fmt.Errorf("%w: key %d has length %d", errArgument, i, l)
		}
		total += l
	}
	b, err := cBytes(buf, total)
	if err != nil {
		return nil, err
	}
	all := string(b)
	keys := make([]string, n)
	off := int64(0)
	for i, l := range ls {
		keys[i] = all[off : off+l]
		off += l
	}
	return keys, nil
}

// cPages returns n buffers of size bytes each, at the n pointers in ptrs.
func cPages(ptrs unsafe.Pointer, n, size int64) ([][]byte, error) {
	if n < 0 || n > maxCount/8 || (ptrs == nil && n > 0) {
		return nil, fmt.Errorf("%w: %d page pointers at %p", errArgument, n, ptrs)
	}
	if n == 0 {
		return nil, nil
	}
	ps := unsafe.Slice((*unsafe.Pointer)(ptrs), n)
	out := make([][]byte, n)
	for i, p := range ps {
		b, err := cBytes(p, size)
		if err != nil {
			return nil, fmt.Errorf("page %d: %w", i, err)
		}
		out[i] = b
	}
	return out, nil
}

// putBools copies oks into res, 1 for true and 0 for false, and zeroes
// whatever of res oks does not cover.
func putBools(res []byte, oks []bool) {
	for i := range res {
		res[i] = 0
		if i < len(oks) && oks[i] {
			res[i] = 1
		}
	}
}

// openStore opens a store from its JSON configuration.
func openStore(js []byte) (int64, error) {
	cfg, err := parseStoreConfig(js)
	if err != nil {
		return 0, err
	}
	s, err := hicachefile.New(cfg)
	if err != nil {
		return 0, err
	}
	return addHandle(&entry{store: s}), nil
}

// registerPool wraps n bytes at base, laid out as the JSON describes, and
// registers it with h's store as the pool called name (the KV pool for "",
// "kv" or "__default__"), detaching the pool of that name registered before.
func registerPool(h int64, name string, js []byte, base unsafe.Pointer, n int64) error {
	cfg, err := parsePoolConfig(js)
	if err != nil {
		return err
	}
	if n < 0 || n > maxCount {
		return fmt.Errorf("%w: pool of %d bytes", hostcache.ErrBadRegion, n)
	}
	e := lookup(h)
	if e == nil {
		return errHandle
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.store == nil {
		return errHandle
	}
	p, err := hostcache.Wrap(cfg, base, int(n))
	if err != nil {
		return err
	}
	if err := e.store.RegisterPool(name, p); err != nil {
		return errors.Join(err, p.Close())
	}
	var old *hostcache.Pool
	if isKV(name) {
		old, e.pool, e.ps = e.pool, p, cfg.PageSize
	} else {
		if e.comps == nil {
			e.comps = make(map[string]*hostcache.Pool)
		}
		old, e.comps[name] = e.comps[name], p
	}
	if old != nil {
		return old.Close()
	}
	return nil
}

// unregisterPool detaches the pool called name from h's store, if any: the
// calls that use it then fail (ErrNoPool for V1) until another is
// registered.
func unregisterPool(h int64, name string) error {
	e := lookup(h)
	if e == nil {
		return errHandle
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.store == nil {
		return errHandle
	}
	var p *hostcache.Pool
	if isKV(name) {
		p, e.pool, e.ps = e.pool, nil, 0
	} else {
		p = e.comps[name]
		delete(e.comps, name)
	}
	if p == nil {
		return nil
	}
	return p.Close()
}

// pageBufferMeta writes the GetPageBufferMeta of the pool called name for
// idx into ptrs and sizes and returns how many buffers it lists; with too
// small arrays it writes nothing and returns errBufferSmall with the count
// needed.
func pageBufferMeta(h int64, name string, idx []int64, ptrs []uint64, sizes []int64) (int64, error) {
	e, err := acquire(h)
	if err != nil {
		return 0, err
	}
	defer e.mu.RUnlock()
	p := e.pool
	if !isKV(name) {
		p = e.comps[name]
	}
	if p == nil {
		return 0, fmt.Errorf("%w: %q", hicachefile.ErrNoPool, name)
	}
	ps, ss, err := p.GetPageBufferMeta(idx)
	if err != nil {
		return 0, err
	}
	if len(ps) > len(ptrs) || len(ss) > len(sizes) {
		return int64(len(ps)), fmt.Errorf("%w: %d buffers, room for %d", errBufferSmall, len(ps), min(len(ptrs), len(sizes)))
	}
	for i := range ps {
		ptrs[i], sizes[i] = uint64(ps[i]), int64(ss[i])
	}
	return int64(len(ps)), nil
}

// Ops of timedOp: the four controller paths, run natively.
const (
	opSetV1  = 0 // BatchSetV1
	opGetV1  = 1 // BatchGetV1
	opSetOld = 2 // GetDataPage per page, then BatchSet
	opGetOld = 3 // BatchGet into new flat pages, then SetFromFlatDataPage
)

// batchV1 runs BatchSetV1 (set) or BatchGetV1 on h's store and writes one
// result per key into res.
func batchV1(h int64, set bool, keys []string, idx []int64, res []byte) error {
	op := opGetV1
	if set {
		op = opSetV1
	}
	_, err := timedOp(h, op, keys, idx, res)
	return err
}

// timedOp runs one of the controller paths on h's store natively, writes one
// result per key into res, and returns the nanoseconds the path took inside
// the library, the call's argument conversion excluded.
func timedOp(h int64, op int, keys []string, idx []int64, res []byte) (int64, error) {
	e, err := acquire(h)
	if err != nil {
		putBools(res, nil)
		return 0, err
	}
	defer e.mu.RUnlock()
	if len(res) != len(keys) {
		putBools(res, nil)
		return 0, fmt.Errorf("%w: %d results for %d keys", hicachefile.ErrLength, len(res), len(keys))
	}
	if e.pool == nil {
		putBools(res, nil)
		return 0, hicachefile.ErrNoPool
	}
	start := time.Now()
	var oks []bool
	switch op {
	case opSetV1:
		oks, err = e.store.BatchSetV1(keys, idx)
	case opGetV1:
		oks, err = e.store.BatchGetV1(keys, idx)
	case opSetOld, opGetOld:
		oks, err = oldPath(e, op == opSetOld, keys, idx)
	default:
		err = fmt.Errorf("%w: op %d", errArgument, op)
	}
	ns := time.Since(start).Nanoseconds()
	putBools(res, oks)
	return ns, err
}

// oldPath is SGLang's generic controller path over the registered pool: a
// flat copy of each page and BatchSet, or BatchGet into new flat pages and a
// copy of each page served into the pool, stopping at the first miss.
func oldPath(e *entry, set bool, keys []string, idx []int64) ([]bool, error) {
	if e.pool == nil {
		return nil, hicachefile.ErrNoPool
	}
	if len(idx) != len(keys)*e.ps {
		return nil, fmt.Errorf("%w: %d indices for %d keys of %d slots", hicachefile.ErrLength, len(idx), len(keys), e.ps)
	}
	pages := make([][]byte, len(keys))
	for i := range keys {
		if set {
			p, err := e.pool.GetDataPage(idx[i*e.ps])
			if err != nil {
				return nil, err
			}
			pages[i] = p
		} else {
			pages[i] = e.pool.GetDummyFlatDataPage()
		}
	}
	if set {
		return e.store.BatchSet(keys, pages)
	}
	oks, err := e.store.BatchGet(keys, pages)
	if err != nil {
		return oks, err
	}
	for i, ok := range oks {
		if !ok {
			break
		}
		if err := e.pool.SetFromFlatDataPage(idx[i*e.ps], pages[i]); err != nil {
			return oks, err
		}
	}
	return oks, nil
}

// setPage stores page under key with the copy interface.
func setPage(h int64, key string, page []byte) error {
	e, err := acquire(h)
	if err != nil {
		return err
	}
	defer e.mu.RUnlock()
	return e.store.Set(key, page)
}

// getPage reads key's page into dst with the copy interface.
func getPage(h int64, key string, dst []byte) error {
	e, err := acquire(h)
	if err != nil {
		return err
	}
	defer e.mu.RUnlock()
	return e.store.Get(key, dst)
}

// batchCopy runs BatchSet (set) or BatchGet with pages and writes one
// result per key into res.
func batchCopy(h int64, set bool, keys []string, pages [][]byte, res []byte) error {
	e, err := acquire(h)
	if err != nil {
		putBools(res, nil)
		return err
	}
	defer e.mu.RUnlock()
	if len(res) != len(keys) {
		putBools(res, nil)
		return fmt.Errorf("%w: %d results for %d keys", hicachefile.ErrLength, len(res), len(keys))
	}
	var oks []bool
	if set {
		oks, err = e.store.BatchSet(keys, pages)
	} else {
		oks, err = e.store.BatchGet(keys, pages)
	}
	putBools(res, oks)
	return err
}

// exists reports whether h's store holds key.
func exists(h int64, key string) (bool, error) {
	e, err := acquire(h)
	if err != nil {
		return false, err
	}
	defer e.mu.RUnlock()
	return e.store.Exists(key), nil
}

// batchExists returns the length of the longest prefix of keys h's store
// holds.
func batchExists(h int64, keys []string) (int64, error) {
	e, err := acquire(h)
	if err != nil {
		return 0, err
	}
	defer e.mu.RUnlock()
	return int64(e.store.BatchExists(keys)), nil
}

// clearStore removes h's store's files.
func clearStore(h int64) error {
	e, err := acquire(h)
	if err != nil {
		return err
	}
	defer e.mu.RUnlock()
	return e.store.Clear()
}

// statsJSON returns h's store's counters as a JSON object.
func statsJSON(h int64) ([]byte, error) {
	e, err := acquire(h)
	if err != nil {
		return nil, err
	}
	defer e.mu.RUnlock()
	return json.Marshal(e.store.Stats())
}

// copyOut copies s into buf and returns len(s); with buf too small it
// writes nothing and returns errBufferSmall, and the length needed.
func copyOut(buf []byte, s []byte) (int64, error) {
	if len(s) > len(buf) {
		return int64(len(s)), fmt.Errorf("%w: %d bytes, room for %d", errBufferSmall, len(s), len(buf))
	}
	copy(buf, s)
	return int64(len(s)), nil
}
