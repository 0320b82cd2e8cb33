//go:build linux

package main

import (
	"fmt"
	"unsafe"

	"github.com/hicache-go/hicache/pkg/hicachefile"
)

// cTransfers builds n transfers from the C arrays the v2 calls share: pool
// names (one buffer, a length each), each transfer's key count, its keys
// (one buffer and a length each, all transfers' in turn), and, when idxPtrs
// is not nil, a pointer to each transfer's host indices and their count.
// A nil index pointer with a count of 0 is an empty list. Without keys
// (BatchExistsV2, where only a transfer's key count matters, and no count
// past the prefix's length changes the result) each transfer's Keys are
// min(count, max(1, prefixKeys)) empty strings sharing one allocation, so
// that a huge count costs no memory.
func cTransfers(n int64, names, nameLens, counts, keys, keyLens, idxPtrs, idxCounts, policies unsafe.Pointer, prefixKeys int64) ([]hicachefile.Transfer, int64, error) {
	ns, err := cKeys(names, nameLens, n)
	if err != nil {
		return nil, 0, err
	}
	cs, err := cInt64s(counts, n)
	if err != nil {
		return nil, 0, err
	}
	total := int64(0)
	for i, c := range cs {
		if c < 0 || c > maxCount-total {
			return nil, 0, fmt.Errorf("%w: transfer %d has %d keys", errArgument, i, c)
		}
		total += c
	}
	var ks []string
	if keys != nil || keyLens != nil { // else only the counts matter (BatchExistsV2)
		if ks, err = cKeys(keys, keyLens, total); err != nil {
			return nil, 0, err
		}
	}
	var ps []int64
	if policies != nil {
		if ps, err = cInt64s(policies, n); err != nil {
			return nil, 0, err
		}
	}
	var ips []unsafe.Pointer
	var ics []int64
	if idxPtrs != nil {
		if n > 0 {
			ips = unsafe.Slice((*unsafe.Pointer)(idxPtrs), n)
		}
		if ics, err = cInt64s(idxCounts, n); err != nil {
			return nil, 0, err
		}
	}
	var blank []string
	if ks == nil {
		blank = make([]string, max(1, min(prefixKeys, total)))
	}
	trs := make([]hicachefile.Transfer, n)
	off := int64(0)
	for i := range trs {
		tr := &trs[i]
		tr.Pool = ns[i]
		if ks != nil {
			tr.Keys = ks[off : off+cs[i]]
		} else {
			tr.Keys = blank[:min(cs[i], int64(len(blank)))]
		}
		off += cs[i]
		if ps != nil && ps[i] != 0 {
			tr.HitPolicy = hicachefile.TrailingPages
		}
		if ips != nil {
			if tr.HostIndices, err = cInt64s(ips[i], ics[i]); err != nil {
				return nil, 0, fmt.Errorf("transfer %d: %w", i, err)
			}
		}
	}
	return trs, total, nil
}

// batchExistsV2 runs BatchExistsV2 on h's store and writes into hits the KV
// pool's hit pages then each transfer's, -1 for a pool the result leaves
// out. It returns the usable prefix.
func batchExistsV2(h int64, keys []string, trs []hicachefile.Transfer, hits []int64) (int64, error) {
	for i := range hits {
		hits[i] = -1
	}
	if len(hits) != len(trs)+1 {
		return 0, fmt.Errorf("%w: room for %d hit counts, want %d", hicachefile.ErrLength, len(hits), len(trs)+1)
	}
	e, err := acquire(h)
	if err != nil {
		return 0, err
	}
	defer e.mu.RUnlock()
	r, err := e.store.BatchExistsV2(keys, trs)
	if err != nil {
		return 0, err
	}
	if v, ok := r.PoolHitPages[hicachefile.KVPool]; ok {
		hits[0] = int64(v)
	}
	for i, tr := range trs {
		if v, ok := r.PoolHitPages[tr.Pool]; ok {
			hits[i+1] = int64(v)
		}
	}
	return int64(r.KVHitPages), nil
}

// batchV2 runs BatchSetV2 (set) or BatchGetV2 on h's store and writes each
// transfer's results, one per key, in turn into res.
func batchV2(h int64, set bool, trs []hicachefile.Transfer, res []byte) error {
	putBools(res, nil)
	e, err := acquire(h)
	if err != nil {
		return err
	}
	defer e.mu.RUnlock()
	total := 0
	for _, tr := range trs {
		total += len(tr.Keys)
	}
	if total != len(res) {
		return fmt.Errorf("%w: %d results for %d keys", hicachefile.ErrLength, len(res), total)
	}
	var m map[string][]bool
	if set {
		m, err = e.store.BatchSetV2(trs)
	} else {
		m, err = e.store.BatchGetV2(trs)
	}
	off := 0
	for _, tr := range trs {
		n := len(tr.Keys)
		putBools(res[off:off+n], m[tr.Pool])
		off += n
	}
	return err
}
