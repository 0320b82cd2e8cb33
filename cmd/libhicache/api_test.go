//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile"
)

// openTest opens a store on a temp dir with a small page_first MHA pool
// over memory the test maps, and returns the handle and the memory.
func openTest(t *testing.T) (int64, []byte) {
	t.Helper()
	// Mapped before the store opens, so that it is unmapped only after the
	// store is closed (cleanups run last first): the lifetime rule.
	n := 2 * 32 * 2 * 1 * 4 * 2
	mem, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	js, _ := json.Marshal(map[string]any{"dir": t.TempDir(), "model_name": "m/x"})
	h, err := openStore(js)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeHandle(h) })
	pool := []byte(`{"kind":"mha","layout":"page_first","dtype":"bfloat16","page_size":4,"size":32,"layer_num":2,"head_num":1,"head_dim":4}`)
	if err := registerPool(h, "kv", pool, unsafe.Pointer(&mem[0]), int64(n)); err != nil {
		t.Fatal(err)
	}
	return h, mem
}

// TestV1RoundTripThroughAHandle: pages written with BatchSetV1 through a
// handle come back byte for byte into other slots of the caller's memory.
func TestV1RoundTripThroughAHandle(t *testing.T) {
	h, mem := openTest(t)
	for i := range mem {
		mem[i] = byte(i*31 + 7)
	}
	res := make([]byte, 2)
	if err := batchV1(h, true, []string{"a", "b"}, []int64{0, 1, 2, 3, 4, 5, 6, 7}, res); err != nil || !bytes.Equal(res, []byte{1, 1}) {
		t.Fatalf("set: %v %v", res, err)
	}
	if err := batchV1(h, false, []string{"b", "a"}, []int64{16, 17, 18, 19, 20, 21, 22, 23}, res); err != nil || !bytes.Equal(res, []byte{1, 1}) {
		t.Fatalf("get: %v %v", res, err)
	}
	// Page a (slots 0-3) went to slots 20-23, b (4-7) to 16-19: compare
	// their buffers as the pool lists them.
	ptrs := make([]uint64, 8)
	sizes := make([]int64, 8)
	if n, err := pageBufferMeta(h, "kv", []int64{0, 1, 2, 3, 20, 21, 22, 23, 4, 5, 6, 7, 16, 17, 18, 19}, ptrs, sizes); err != nil || n != 8 {
		t.Fatalf("meta: %d %v", n, err)
	}
	base := uint64(uintptr(unsafe.Pointer(&mem[0])))
	buf := func(i int) []byte { return mem[ptrs[i]-base : ptrs[i]-base+uint64(sizes[i])] }
	for _, pair := range [][2]int{{0, 2}, {1, 3}, {4, 6}, {5, 7}} {
		if !bytes.Equal(buf(pair[0]), buf(pair[1])) {
			t.Fatalf("buffer %d came back as %v, want %v", pair[0], buf(pair[1]), buf(pair[0]))
		}
	}
	js, err := statsJSON(h)
	if err != nil || !strings.Contains(string(js), `"Sets":2`) {
		t.Fatalf("stats %s %v", js, err)
	}
}

// TestCallsAfterCloseFailWithCodeHandle: a closed or unknown handle is
// CodeHandle for every call, and closing twice is too.
func TestCallsAfterCloseFailWithCodeHandle(t *testing.T) {
	h, _ := openTest(t)
	if err := closeHandle(h); err != nil {
		t.Fatal(err)
	}
	res := []byte{9}
	if err := batchV1(h, false, []string{"a"}, []int64{0, 1, 2, 3}, res); codeOf(err) != CodeHandle || res[0] != 0 {
		t.Fatalf("after close: %v %v", res, err)
	}
	if _, err := batchExists(h, []string{"a"}); codeOf(err) != CodeHandle {
		t.Fatal(err)
	}
	if err := closeHandle(h); codeOf(err) != CodeHandle {
		t.Fatal(err)
	}
	if err := clearStore(12345); codeOf(err) != CodeHandle {
		t.Fatal(err)
	}
}

// TestBadArgumentsAreCodes: bad JSON, unknown fields, bad pools and bad
// C arrays come back as codes, never a panic.
func TestBadArgumentsAreCodes(t *testing.T) {
	for _, c := range []struct {
		js   string
		want Code
	}{
		{`{`, CodeArgument},
		{`{"dir": 5}`, CodeArgument},
		{`{"nosuch": 1}`, CodeArgument},
		{`{} {}`, CodeArgument},
		{`{"tp_size": -1}`, CodeConfig},
	} {
		if _, err := openStore([]byte(c.js)); codeOf(err) != c.want {
			t.Errorf("open %s: %v, want code %d", c.js, err, c.want)
		}
	}
	h, mem := openTest(t)
	for _, c := range []struct {
		js   string
		n    int64
		want Code
	}{
		{`{"kind":"gqa","layout":"page_first","dtype":"bfloat16","page_size":4,"size":32,"layer_num":2,"head_num":1,"head_dim":4}`, 512, CodeConfig},
		{`{"kind":"mha","layout":"page_first","dtype":"bfloat16","page_size":4,"size":30,"layer_num":2,"head_num":1,"head_dim":4}`, 512, CodeConfig},
		{`{"kind":"mha","layout":"page_first","dtype":"bfloat16","page_size":4,"size":32,"layer_num":2,"head_num":1,"head_dim":4}`, 511, CodeMemory},
	} {
		if err := registerPool(h, "", []byte(c.js), unsafe.Pointer(&mem[0]), c.n); codeOf(err) != c.want {
			t.Errorf("register %s (%d bytes): %v, want code %d", c.js, c.n, err, c.want)
		}
	}
	if _, err := cKeys(nil, nil, 1); codeOf(err) != CodeArgument {
		t.Error(err)
	}
	lens := []int64{-1}
	if _, err := cKeys(unsafe.Pointer(&mem[0]), unsafe.Pointer(&lens[0]), 1); codeOf(err) != CodeArgument {
		t.Error(err)
	}
	if _, err := cBytes(nil, -1); codeOf(err) != CodeArgument {
		t.Error(err)
	}
}

// TestUnregisteredPoolFailsV1WithNoPool: after unregisterPool, V1 calls
// fail with CodeNoPool, their results all false.
func TestUnregisteredPoolFailsV1WithNoPool(t *testing.T) {
	h, _ := openTest(t)
	if err := unregisterPool(h, "kv"); err != nil {
		t.Fatal(err)
	}
	res := []byte{1}
	if err := batchV1(h, true, []string{"a"}, []int64{0, 1, 2, 3}, res); codeOf(err) != CodeNoPool || res[0] != 0 {
		t.Fatalf("%v %v", res, err)
	}
}

// TestGuardTurnsAPanicIntoCodePanic: a panic becomes CodePanic and the
// calling thread's last error names it.
func TestGuardTurnsAPanicIntoCodePanic(t *testing.T) {
	// guard records the message for this OS thread; keep the goroutine
	// on it so that lastError reads the same thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := guard(func() int64 { panic("boom") })
	if Code(r) != CodePanic || !strings.Contains(lastError(), "boom") {
		t.Fatalf("guard = %d, last error %q; want CodePanic and the panic's message", r, lastError())
	}
}

// TestVersionIsThePythonPackages: the library's Version is the one the
// Python package checks for.
func TestVersionIsThePythonPackages(t *testing.T) {
	b, err := os.ReadFile("../../python/hicache_go/_version.py")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`__version__ = "([^"]+)"`).FindSubmatch(b)
	if m == nil || string(m[1]) != Version {
		t.Fatalf("python/hicache_go/_version.py has %q, the library %q", m, Version)
	}
}

// TestV2ThroughAHandle: a component pool registered by name takes part in
// the v2 calls beside the KV pool, a transfer whose indices do not fit its
// keys fails alone, and BatchExistsV2's counts come back per transfer.
func TestV2ThroughAHandle(t *testing.T) {
	h, mem := openTest(t)
	for i := range mem {
		mem[i] = byte(i*7 + 1)
	}
	state, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(state)
	for i := range state {
		state[i] = byte(i * 13)
	}
	comp := []byte(`{"kind":"component","layout":"page_first","dtype":"uint8","page_size":1,"size":32,"buffer_bytes":[16,8]}`)
	if err := registerPool(h, "mamba", comp, unsafe.Pointer(&state[0]), int64(len(state))); err != nil {
		t.Fatal(err)
	}
	keys := []string{"p0", "p1"}
	trs := []hicachefile.Transfer{
		{Pool: "kv", Keys: keys, HostIndices: []int64{0, 1, 2, 3, 4, 5, 6, 7}},
		{Pool: "mamba", Keys: keys[1:], HostIndices: []int64{2}},
		{Pool: "mamba", Keys: keys, HostIndices: []int64{2}},
	}
	res := make([]byte, 5)
	if err := batchV2(h, true, trs[:2], res[:3]); err != nil || !bytes.Equal(res[:3], []byte{1, 1, 1}) {
		t.Fatalf("set: %v %v", res[:3], err)
	}
	if err := batchV2(h, true, trs[2:], res[:2]); !bytes.Equal(res[:2], []byte{0, 0}) {
		t.Fatalf("a transfer of 1 slot for 2 keys: %v %v", res[:2], err)
	}
	hits := make([]int64, 2)
	n, err := batchExistsV2(h, keys, []hicachefile.Transfer{{Pool: "mamba", Keys: keys[1:], HitPolicy: hicachefile.TrailingPages}}, hits)
	if err != nil || n != 2 || hits[0] != 2 || hits[1] != 2 {
		t.Fatalf("exists: %d %v %v", n, hits, err)
	}
	want := append([]byte(nil), state[2*16:3*16]...)
	clear(state[5*16 : 6*16])
	if err := batchV2(h, false, []hicachefile.Transfer{{Pool: "mamba", Keys: keys[1:], HostIndices: []int64{5}}}, res[:1]); err != nil || res[0] != 1 {
		t.Fatalf("get: %v %v", res[:1], err)
	}
	if !bytes.Equal(state[5*16:6*16], want) {
		t.Fatal("the state page came back with other bytes")
	}
}

// TestCloseWhileCallsRun: closeHandle while other goroutines call the
// store waits for the calls in progress; later calls fail with CodeHandle.
func TestCloseWhileCallsRun(t *testing.T) {
	h, _ := openTest(t)
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := make([]byte, 1)
			for i := 0; ; i++ {
				key := fmt.Sprintf("c%d-%d", g, i)
				idx := []int64{int64(g * 4), int64(g*4 + 1), int64(g*4 + 2), int64(g*4 + 3)}
				err := batchV1(h, i%2 == 0, []string{key}, idx, res)
				if codeOf(err) == CodeHandle {
					return
				}
				if err != nil {
					t.Errorf("call before close: %v", err)
					return
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	if err := closeHandle(h); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

// TestCodesAreThePythonPackages: python/hicache_go/_lib.py spells every
// Code with the library's value.
func TestCodesAreThePythonPackages(t *testing.T) {
	b, err := os.ReadFile("../../python/hicache_go/_lib.py")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Code{
		"OK": CodeOK, "ERROR": CodeError, "ARGUMENT": CodeArgument, "HANDLE": CodeHandle,
		"NO_POOL": CodeNoPool, "INVALID_KEY": CodeInvalidKey, "LENGTH": CodeLength,
		"NOT_FOUND": CodeNotFound, "CORRUPT": CodeCorrupt, "PANIC": CodePanic,
		"CONFIG": CodeConfig, "INDICES": CodeIndices, "MEMORY": CodeMemory, "BUFFER_SMALL": CodeBufferSmall,
	}
	for name, code := range want {
		m := regexp.MustCompile(`(?m)^` + name + ` = (-?\d+)$`).FindSubmatch(b)
		if m == nil || string(m[1]) != fmt.Sprint(int64(code)) {
			t.Errorf("_lib.py %s = %q, the library's is %d", name, m, code)
		}
	}
	if abi := fmt.Sprintf("\nABI = %d\n", ABI); !bytes.Contains(b, []byte(abi)) {
		t.Errorf("_lib.py does not say %q", abi)
	}
	ops := fmt.Sprintf("OP_SET_V1, OP_GET_V1, OP_SET_OLD, OP_GET_OLD = %d, %d, %d, %d", opSetV1, opGetV1, opSetOld, opGetOld)
	if !bytes.Contains(b, []byte(ops)) {
		t.Errorf("_lib.py does not say %q", ops)
	}
}

// TestHugeTransferKeyCountInExistsCostsNoMemory: batch_exists_v2 takes only
// a transfer's key count, so a huge count (an adversary's, or a window far
// past the prefix) neither allocates per key nor changes the answer.
func TestHugeTransferKeyCountInExistsCostsNoMemory(t *testing.T) {
	names := []byte("mamba")
	nameLens := []int64{int64(len(names))}
	policies := []int64{1}
	for _, count := range []int64{1 << 38, 3} {
		counts := []int64{count}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		trs, _, err := cTransfers(1, unsafe.Pointer(&names[0]), unsafe.Pointer(&nameLens[0]), unsafe.Pointer(&counts[0]),
			nil, nil, nil, nil, unsafe.Pointer(&policies[0]), 2)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("count %d: %v", count, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("count %d: %d bytes allocated", count, grew)
		}
		if n := len(trs[0].Keys); n != 2 || trs[0].HitPolicy != hicachefile.TrailingPages {
			t.Errorf("count %d: a transfer of %d keys (%v); want 2, trailing", count, n, trs[0].HitPolicy)
		}
	}
}
