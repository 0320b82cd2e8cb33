//go:build linux

package main

/*
#include <stdint.h>
*/
import "C"

import (
	"unsafe"

	"github.com/hicache-go/hicache/pkg/hicachefile"
)

// The exported functions: thin conversions from C's types to the Go
// functions beside them, each under guard. See the package documentation
// for the conventions.

//export hc_abi
func hc_abi() C.int64_t { return C.int64_t(guard(func() int64 { return ABI })) }

//export hc_version
func hc_version(buf *C.char, size C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		b, err := cBytes(unsafe.Pointer(buf), int64(size))
		if err != nil {
			return result(0, err)
		}
		return result(copyOut(b, []byte(Version)))
	}))
}

//export hc_last_error
func hc_last_error(buf *C.char, size C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		b, err := cBytes(unsafe.Pointer(buf), int64(size))
		if err != nil {
			return result(0, err)
		}
		msg := []byte(lastError())
		if len(msg) > len(b) {
			msg = msg[:len(b)]
		}
		return int64(copy(b, msg))
	}))
}

//export hc_open
func hc_open(config *C.char, n C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		js, err := cBytes(unsafe.Pointer(config), int64(n))
		if err != nil {
			return result(0, err)
		}
		return result(openStore(js))
	}))
}

//export hc_close
func hc_close(h C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 { return result(0, closeHandle(int64(h))) }))
}

//export hc_register_pool
func hc_register_pool(h C.int64_t, name *C.char, nlen C.int64_t, config *C.char, n C.int64_t, base unsafe.Pointer, size C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		nm, err := cBytes(unsafe.Pointer(name), int64(nlen))
		if err != nil {
			return result(0, err)
		}
		js, err := cBytes(unsafe.Pointer(config), int64(n))
		if err != nil {
			return result(0, err)
		}
		return result(0, registerPool(int64(h), string(nm), js, base, int64(size)))
	}))
}

//export hc_unregister_pool
func hc_unregister_pool(h C.int64_t, name *C.char, nlen C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		nm, err := cBytes(unsafe.Pointer(name), int64(nlen))
		if err != nil {
			return result(0, err)
		}
		return result(0, unregisterPool(int64(h), string(nm)))
	}))
}

//export hc_page_buffer_meta
func hc_page_buffer_meta(h C.int64_t, name *C.char, nlen C.int64_t, idx *C.int64_t, nidx C.int64_t, ptrs *C.uint64_t, sizes *C.int64_t, capacity C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		nm, err := cBytes(unsafe.Pointer(name), int64(nlen))
		if err != nil {
			return result(0, err)
		}
		ix, err := cInt64s(unsafe.Pointer(idx), int64(nidx))
		if err != nil {
			return result(0, err)
		}
		ps, err := cInt64s(unsafe.Pointer(ptrs), int64(capacity))
		if err != nil {
			return result(0, err)
		}
		ss, err := cInt64s(unsafe.Pointer(sizes), int64(capacity))
		if err != nil {
			return result(0, err)
		}
		return result(pageBufferMeta(int64(h), string(nm), ix, unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(ps))), len(ps)), ss))
	}))
}

// v1Args converts the arguments the V1 calls share.
func v1Args(keys *C.char, lens *C.int64_t, nkeys C.int64_t, idx *C.int64_t, nidx C.int64_t, res *C.uint8_t) ([]string, []int64, []byte, error) {
	out, err := cBytes(unsafe.Pointer(res), int64(nkeys))
	if err != nil {
		return nil, nil, nil, err
	}
	putBools(out, nil)
	ks, err := cKeys(unsafe.Pointer(keys), unsafe.Pointer(lens), int64(nkeys))
	if err != nil {
		return nil, nil, out, err
	}
	ix, err := cInt64s(unsafe.Pointer(idx), int64(nidx))
	return ks, ix, out, err
}

//export hc_batch_set_v1
func hc_batch_set_v1(h C.int64_t, keys *C.char, lens *C.int64_t, nkeys C.int64_t, idx *C.int64_t, nidx C.int64_t, res *C.uint8_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		ks, ix, out, err := v1Args(keys, lens, nkeys, idx, nidx, res)
		if err != nil {
			return result(0, err)
		}
		return result(0, batchV1(int64(h), true, ks, ix, out))
	}))
}

//export hc_batch_get_v1
func hc_batch_get_v1(h C.int64_t, keys *C.char, lens *C.int64_t, nkeys C.int64_t, idx *C.int64_t, nidx C.int64_t, res *C.uint8_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		ks, ix, out, err := v1Args(keys, lens, nkeys, idx, nidx, res)
		if err != nil {
			return result(0, err)
		}
		return result(0, batchV1(int64(h), false, ks, ix, out))
	}))
}

//export hc_timed
func hc_timed(h C.int64_t, op C.int64_t, keys *C.char, lens *C.int64_t, nkeys C.int64_t, idx *C.int64_t, nidx C.int64_t, res *C.uint8_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		ks, ix, out, err := v1Args(keys, lens, nkeys, idx, nidx, res)
		if err != nil {
			return result(0, err)
		}
		return result(timedOp(int64(h), int(op), ks, ix, out))
	}))
}

// pageArgs converts the arguments the one-page copy calls share: a key and
// a page buffer of n bytes, both the caller's.
func pageArgs(key *C.char, klen C.int64_t, page unsafe.Pointer, n C.int64_t) (string, []byte, error) {
	k, err := cBytes(unsafe.Pointer(key), int64(klen))
	if err != nil {
		return "", nil, err
	}
	p, err := cBytes(page, int64(n))
	return string(k), p, err
}

//export hc_set
func hc_set(h C.int64_t, key *C.char, klen C.int64_t, page unsafe.Pointer, n C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		k, p, err := pageArgs(key, klen, page, n)
		if err != nil {
			return result(0, err)
		}
		return result(0, setPage(int64(h), k, p))
	}))
}

//export hc_get
func hc_get(h C.int64_t, key *C.char, klen C.int64_t, dst unsafe.Pointer, n C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		k, p, err := pageArgs(key, klen, dst, n)
		if err != nil {
			return result(0, err)
		}
		return result(0, getPage(int64(h), k, p))
	}))
}

// copyArgs converts the arguments the batch copy calls share.
func copyArgs(keys *C.char, lens *C.int64_t, nkeys C.int64_t, pages unsafe.Pointer, size C.int64_t, res *C.uint8_t) ([]string, [][]byte, []byte, error) {
	out, err := cBytes(unsafe.Pointer(res), int64(nkeys))
	if err != nil {
		return nil, nil, nil, err
	}
	putBools(out, nil)
	ks, err := cKeys(unsafe.Pointer(keys), unsafe.Pointer(lens), int64(nkeys))
	if err != nil {
		return nil, nil, out, err
	}
	ps, err := cPages(pages, int64(nkeys), int64(size))
	return ks, ps, out, err
}

//export hc_batch_set
func hc_batch_set(h C.int64_t, keys *C.char, lens *C.int64_t, nkeys C.int64_t, pages unsafe.Pointer, size C.int64_t, res *C.uint8_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		ks, ps, out, err := copyArgs(keys, lens, nkeys, pages, size, res)
		if err != nil {
			return result(0, err)
		}
		return result(0, batchCopy(int64(h), true, ks, ps, out))
	}))
}

//export hc_batch_get
func hc_batch_get(h C.int64_t, keys *C.char, lens *C.int64_t, nkeys C.int64_t, pages unsafe.Pointer, size C.int64_t, res *C.uint8_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		ks, ps, out, err := copyArgs(keys, lens, nkeys, pages, size, res)
		if err != nil {
			return result(0, err)
		}
		return result(0, batchCopy(int64(h), false, ks, ps, out))
	}))
}

//export hc_exists
func hc_exists(h C.int64_t, key *C.char, klen C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		k, err := cBytes(unsafe.Pointer(key), int64(klen))
		if err != nil {
			return result(0, err)
		}
		ok, err := exists(int64(h), string(k))
		if ok {
			return result(1, err)
		}
		return result(0, err)
	}))
}

//export hc_batch_exists
func hc_batch_exists(h C.int64_t, keys *C.char, lens *C.int64_t, nkeys C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		ks, err := cKeys(unsafe.Pointer(keys), unsafe.Pointer(lens), int64(nkeys))
		if err != nil {
			return result(0, err)
		}
		return result(batchExists(int64(h), ks))
	}))
}

//export hc_clear
func hc_clear(h C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 { return result(0, clearStore(int64(h))) }))
}

//export hc_stats
func hc_stats(h C.int64_t, buf *C.char, size C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		b, err := cBytes(unsafe.Pointer(buf), int64(size))
		if err != nil {
			return result(0, err)
		}
		js, err := statsJSON(int64(h))
		if err != nil {
			return result(0, err)
		}
		return result(copyOut(b, js))
	}))
}

//export hc_batch_exists_v2
func hc_batch_exists_v2(h C.int64_t, keys *C.char, lens *C.int64_t, nkeys C.int64_t, ntr C.int64_t, names *C.char, nameLens *C.int64_t, counts *C.int64_t, policies *C.int64_t, hits *C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		hs, err := cInt64s(unsafe.Pointer(hits), int64(ntr)+1)
		if err != nil {
			return result(0, err)
		}
		for i := range hs {
			hs[i] = -1
		}
		ks, err := cKeys(unsafe.Pointer(keys), unsafe.Pointer(lens), int64(nkeys))
		if err != nil {
			return result(0, err)
		}
		trs, _, err := cTransfers(int64(ntr), unsafe.Pointer(names), unsafe.Pointer(nameLens), unsafe.Pointer(counts), nil, nil, nil, nil, unsafe.Pointer(policies), int64(nkeys))
		if err != nil {
			return result(0, err)
		}
		return result(batchExistsV2(int64(h), ks, trs, hs))
	}))
}

//export hc_batch_v2
func hc_batch_v2(h C.int64_t, set C.int64_t, ntr C.int64_t, names *C.char, nameLens *C.int64_t, counts *C.int64_t, keys *C.char, keyLens *C.int64_t, idxPtrs unsafe.Pointer, idxCounts *C.int64_t, res *C.uint8_t, nres C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		out, err := cBytes(unsafe.Pointer(res), int64(nres))
		if err != nil {
			return result(0, err)
		}
		putBools(out, nil)
		trs, _, err := cTransfers(int64(ntr), unsafe.Pointer(names), unsafe.Pointer(nameLens), unsafe.Pointer(counts),
			unsafe.Pointer(keys), unsafe.Pointer(keyLens), idxPtrs, unsafe.Pointer(idxCounts), nil, int64(nres))
		if err != nil {
			return result(0, err)
		}
		return result(0, batchV2(int64(h), set != 0, trs, out))
	}))
}

//export hc_parse_size
func hc_parse_size(s *C.char, n C.int64_t, out *C.int64_t) C.int64_t {
	return C.int64_t(guard(func() int64 {
		b, err := cBytes(unsafe.Pointer(s), int64(n))
		if err != nil {
			return result(0, err)
		}
		o, err := cInt64s(unsafe.Pointer(out), 1)
		if err != nil {
			return result(0, err)
		}
		v, err := hicachefile.ParseSize(string(b))
		o[0] = v
		return result(0, err)
	}))
}
