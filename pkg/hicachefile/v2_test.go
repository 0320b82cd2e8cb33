//go:build linux

package hicachefile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// componentCfg is a pool of another shape than mhaCfg, as a Mamba state
// pool is: one token per page, two state buffers per page.
var componentCfg = hostcache.Config{Kind: hostcache.Component, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
	PageSize: 1, Pages: 32, BufferBytes: [hostcache.MaxComponentBuffers]int{48, 16}}

// v2Store returns a store with mhaCfg as its KV pool and componentCfg
// registered as "mamba", with n random pages allocated in each.
func v2Store(t *testing.T, dir string, n int) (s *Store, kv, comp *hostcache.Pool, kvIdx, compIdx []int64) {
	t.Helper()
	kv, kvIdx = randomPages(t, n)
	comp = newPool(t, componentCfg)
	compIdx, err := comp.Alloc(n * componentCfg.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, comp, compIdx)
	s = newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	if err := s.RegisterPool(KVPool, kv); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterPool("mamba", comp); err != nil {
		t.Fatal(err)
	}
	return s, kv, comp, kvIdx, compIdx
}

// TestV2RoundTripAcrossRestart: pages set through BatchSetV2 come back
// byte-exact through BatchGetV2 from a new store on the same directory.
func TestV2RoundTripAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s, kv, comp, kvIdx, compIdx := v2Store(t, dir, 3)
	keys := []string{"a", "b", "c"}
	res, err := s.BatchSetV2([]Transfer{{Pool: KVPool, Keys: keys, HostIndices: kvIdx}, {Pool: "mamba", Keys: keys, HostIndices: compIdx}})
	if err != nil || fmt.Sprint(res) != "map[kv:[true true true] mamba:[true true true]]" {
		t.Fatalf("BatchSetV2 = %v, %v", res, err)
	}
	wantKV, _ := kv.PageBuffers(kvIdx)
	wantComp, _ := comp.PageBuffers(compIdx)
	wantKV, wantComp = copyBufs(wantKV), copyBufs(wantComp)
	_ = s.Close()

	r, kv2, comp2, kvIdx2, compIdx2 := v2Store(t, dir, 3)
	res, err = r.BatchGetV2([]Transfer{{Pool: KVPool, Keys: keys, HostIndices: kvIdx2}, {Pool: "mamba", Keys: keys, HostIndices: compIdx2}})
	if err != nil || fmt.Sprint(res) != "map[kv:[true true true] mamba:[true true true]]" {
		t.Fatalf("BatchGetV2 = %v, %v", res, err)
	}
	gotKV, _ := kv2.PageBuffers(kvIdx2)
	gotComp, _ := comp2.PageBuffers(compIdx2)
	if !equalBufs(gotKV, wantKV) || !equalBufs(gotComp, wantComp) {
		t.Fatal("pages differ after the round trip")
	}
	got, err := r.BatchExistsV2(keys, []Transfer{{Pool: "mamba", Keys: keys[2:], HitPolicy: TrailingPages}})
	if err != nil || got.KVHitPages != 3 || got.PoolHitPages["kv"] != 3 || got.PoolHitPages["mamba"] != 3 {
		t.Fatalf("BatchExistsV2 = %+v, %v", got, err)
	}
}

// TestV2ReadsSGLangComponentFiles: a component page in SGLang's file
// {key}.{pool}{suffix}.bin, as the copy interface writes it, is read by
// BatchGetV2 and counted by BatchExistsV2.
func TestV2ReadsSGLangComponentFiles(t *testing.T) {
	dir := t.TempDir()
	s, _, comp, _, compIdx := v2Store(t, dir, 2)
	page := bytes.Repeat([]byte{7}, comp.PageBytes())
	if err := s.Set("a.mamba", page); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.mamba_m_0_1.bin")); err != nil {
		t.Fatal(err)
	}
	res, err := s.BatchGetV2([]Transfer{{Pool: "mamba", Keys: []string{"a", "b"}, HostIndices: compIdx}})
	if err != nil || fmt.Sprint(res["mamba"]) != "[true false]" {
		t.Fatalf("BatchGetV2 = %v, %v", res, err)
	}
	got, _ := comp.GetDataPage(compIdx[0])
	if !bytes.Equal(got, page) {
		t.Fatal("the SGLang file's bytes did not arrive")
	}
}

// TestV2LengthMismatchFailsOnlyThatTransfer: a transfer whose indices do
// not match its keys is all false; the others go through.
func TestV2LengthMismatchFailsOnlyThatTransfer(t *testing.T) {
	s, _, _, kvIdx, compIdx := v2Store(t, t.TempDir(), 2)
	res, err := s.BatchSetV2([]Transfer{{Pool: KVPool, Keys: []string{"a", "b"}, HostIndices: kvIdx}, {Pool: "mamba", Keys: []string{"a", "b"}, HostIndices: compIdx[:1]}})
	if err != nil || fmt.Sprint(res) != "map[kv:[true true] mamba:[false false]]" {
		t.Fatalf("BatchSetV2 = %v, %v", res, err)
	}
	res, err = s.BatchSetV2([]Transfer{{Pool: "swa", Keys: []string{"a"}, HostIndices: compIdx[:1]}})
	if err == nil || fmt.Sprint(res) != "map[swa:[false]]" {
		t.Fatalf("BatchSetV2 of an unregistered pool = %v, %v; want false and ErrNoPool", res, err)
	}
}

// TestTrailingBoundary pins the trailing_pages boundary against its
// definition on every pattern of up to 8 pages.
func TestTrailingBoundary(t *testing.T) {
	for n := 0; n <= 8; n++ {
		for mask := 0; mask < 1<<n; mask++ {
			have := make([]bool, n)
			for i := range have {
				have[i] = mask&(1<<i) != 0
			}
			for tr := 1; tr <= n+1; tr++ {
				want := 0
				for p := n; p > 0; p-- {
					all := true
					for i := max(0, p-tr); i < p; i++ {
						all = all && have[i]
					}
					if all {
						want = p
						break
					}
				}
				if got := trailingBoundary(have, tr); got != want {
					t.Fatalf("trailingBoundary(%v, %d) = %d, want %d", have, tr, got, want)
				}
			}
		}
	}
}

func copyBufs(bufs [][]byte) [][]byte {
	out := make([][]byte, len(bufs))
	for i, b := range bufs {
		out[i] = bytes.Clone(b)
	}
	return out
}

func equalBufs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestV2ConcurrentWithRegisterAndClose: v2 calls running while pools are
// registered again and the store closes never panic, always return one
// result per key of every transfer, and after Close return ErrClosed.
func TestV2ConcurrentWithRegisterAndClose(t *testing.T) {
	s, kv, comp, kvIdx, compIdx := v2Store(t, t.TempDir(), 4)
	keys := []string{"a", "b", "c", "d"}
	ts := []Transfer{{Pool: KVPool, Keys: keys, HostIndices: kvIdx}, {Pool: "mamba", Keys: keys, HostIndices: compIdx, HitPolicy: TrailingPages}}
	done := make(chan struct{})
	errs := make(chan error, 64)
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 30 {
				var res map[string][]bool
				switch (w + i) % 4 {
				case 0:
					res, _ = s.BatchSetV2(ts)
				case 1:
					res, _ = s.BatchGetV2(ts)
				case 2:
					_, _ = s.BatchExistsV2(keys, ts)
					continue
				case 3:
					_ = s.RegisterPool("mamba", comp)
					_ = s.RegisterPool(KVPool, kv)
					continue
				}
				if len(res["kv"]) != len(keys) || len(res["mamba"]) != len(keys) {
					errs <- fmt.Errorf("results %v", res)
					return
				}
			}
		}()
	}
	for range 2 {
		<-done
	}
	_ = s.Close()
	for range 2 {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if _, err := s.BatchSetV2(ts); err != ErrClosed {
		t.Fatalf("BatchSetV2 after Close = %v, want ErrClosed", err)
	}
	if _, err := s.BatchExistsV2(keys, ts); err != ErrClosed {
		t.Fatalf("BatchExistsV2 after Close = %v, want ErrClosed", err)
	}
	if err := s.RegisterPool("swa", comp); err != ErrClosed {
		t.Fatalf("RegisterPool after Close = %v, want ErrClosed", err)
	}
}

// TestComponentOldFilesCountOnce: SGLang's component files count toward the
// KV store's bound, not a second time toward the component store's.
func TestComponentOldFilesCountOnce(t *testing.T) {
	dir := t.TempDir()
	for i := range 3 {
		name := filepath.Join(dir, fmt.Sprintf("k%d.mamba_m_0_1.bin", i))
		if err := os.WriteFile(name, make([]byte, 100), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBytes: 1 << 30}, nil)
	comp := newPool(t, componentCfg)
	if err := s.RegisterPool("mamba", comp); err != nil {
		t.Fatal(err)
	}
	c := s.components.get("mamba")
	if got := s.lru.Tracked(); got != 300 {
		t.Fatalf("the KV store tracks %d bytes, want the 300 of the component files", got)
	}
	if got := c.lru.Tracked(); got != 0 {
		t.Fatalf("the component store tracks %d bytes, want 0", got)
	}
}
