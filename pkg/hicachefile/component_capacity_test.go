//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

// dirFileBytes returns the bytes of the regular files under dir.
func dirFileBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestMaxBytesBoundsComponentPoolPages: MaxBytes bounds the store's files
// with its component pools' pages among them, as SGLang's one evictor per
// backend bounds every file the backend writes: pages written through
// BatchSetV2 to the KV pool and to a component pool together stay within
// MaxBytes.
func TestMaxBytesBoundsComponentPoolPages(t *testing.T) {
	const n = 16
	kv, kvIdx := randomPages(t, n)
	comp := newPool(t, componentCfg)
	compIdx, err := comp.Alloc(n * componentCfg.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, comp, compIdx)
	dir := t.TempDir()
	limit := 6 * oneKeyFile(kv.PageBytes())
	s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBytes: limit, EvictionRatio: 1}, kv)
	if err := s.RegisterPool("mamba", comp); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		k := []string{fmt.Sprint("k", i)}
		res, err := s.BatchSetV2([]Transfer{
			{Pool: KVPool, Keys: k, HostIndices: kvIdx[i*mhaCfg.PageSize : (i+1)*mhaCfg.PageSize]},
			{Pool: "mamba", Keys: k, HostIndices: compIdx[i*componentCfg.PageSize : (i+1)*componentCfg.PageSize]},
		})
		if err != nil {
			t.Fatalf("BatchSetV2 #%d = %v, %v", i, res, err)
		}
		if got := dirFileBytes(t, dir); got > limit {
			t.Fatalf("after %d pages of each pool the directory holds %d bytes, MaxBytes is %d", i+1, got, limit)
		}
	}
}

// TestSharedMaxBytesEvictionRacingClose: writers of the KV pool and of a
// component pool evicting each other's files while the store closes
// neither deadlock nor fail other than with ErrClosed.
func TestSharedMaxBytesEvictionRacingClose(t *testing.T) {
	const n = 8
	kv, kvIdx := randomPages(t, n)
	comp := newPool(t, componentCfg)
	compIdx, err := comp.Alloc(n * componentCfg.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, comp, compIdx)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MaxBytes: 4 * oneKeyFile(kv.PageBytes())}, kv)
	if err := s.RegisterPool("mamba", comp); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	fail := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				k := []string{fmt.Sprint("w", w, "-", i)}
				j := i % n
				res, err := s.BatchSetV2([]Transfer{
					{Pool: KVPool, Keys: k, HostIndices: kvIdx[j*mhaCfg.PageSize : (j+1)*mhaCfg.PageSize]},
					{Pool: "mamba", Keys: k, HostIndices: compIdx[j : j+1]},
				})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil || !res["kv"][0] || !res["mamba"][0] {
					fail <- fmt.Errorf("BatchSetV2 = %v, %v", res, err)
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	within(t, "Close and the writers", func() {
		_ = s.Close()
		wg.Wait()
	})
	close(fail)
	for err := range fail {
		t.Error(err)
	}
}

// TestMinFreeBytesEvictsComponentPages: with MinFreeBytes, a KV page that
// would leave too little free space evicts the component pool's older pages
// rather than being refused, as SGLang's one evictor over the backend's
// files does, and the free space stays at or above MinFreeBytes.
func TestMinFreeBytesEvictsComponentPages(t *testing.T) {
	const n = 4
	kv, kvIdx := randomPages(t, n)
	comp := newPool(t, componentCfg)
	compIdx, err := comp.Alloc(componentCfg.Pages)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, comp, compIdx)
	file := oneKeyFile(kv.PageBytes())
	d := &smallDisk{t: t, dir: t.TempDir(), capacity: 10 * file}
	s := newStore(t, Config{Dir: d.dir, ModelName: "m", MinFreeBytes: 2 * file, Syscalls: d.syscalls()}, kv)
	if err := s.RegisterPool("mamba", comp); err != nil {
		t.Fatal(err)
	}
	for i := 0; d.capacity-d.used() >= 3*file; i++ {
		if i == 200 {
			t.Fatalf("200 component pages leave %d bytes free", d.capacity-d.used())
		}
		k := []string{fmt.Sprint("m", i)}
		j := i % componentCfg.Pages
		if res, err := s.BatchSetV2([]Transfer{{Pool: "mamba", Keys: k, HostIndices: compIdx[j : j+1]}}); err != nil || !res["mamba"][0] {
			t.Fatalf("BatchSetV2(mamba) #%d = %v, %v", i, res, err)
		}
	}
	for i := range n {
		k := []string{fmt.Sprint("k", i)}
		res, err := s.BatchSetV2([]Transfer{{Pool: KVPool, Keys: k, HostIndices: kvIdx[i*mhaCfg.PageSize : (i+1)*mhaCfg.PageSize]}})
		if err != nil || !res["kv"][0] {
			t.Fatalf("BatchSetV2(kv) #%d = %v, %v; the component pool's pages were not evicted for it", i, res, err)
		}
		if free := d.capacity - d.used(); free < 2*file {
			t.Fatalf("after KV page %d: %d bytes free, MinFreeBytes is %d", i, free, 2*file)
		}
	}
}

// TestStatsCountComponentPoolPages: the store's Stats count what its
// component pools' stores did too: pages a BatchSetV2 wrote and a
// BatchGetV2 served in every pool.
func TestStatsCountComponentPoolPages(t *testing.T) {
	s, _, _, kvIdx, compIdx := v2Store(t, t.TempDir(), 3)
	keys := []string{"a", "b", "c"}
	ts := []Transfer{{Pool: KVPool, Keys: keys, HostIndices: kvIdx}, {Pool: "mamba", Keys: keys, HostIndices: compIdx}}
	if res, err := s.BatchSetV2(ts); err != nil || !all(res["kv"]) || !all(res["mamba"]) {
		t.Fatalf("BatchSetV2 = %v, %v", res, err)
	}
	if res, err := s.BatchGetV2(ts); err != nil || !all(res["kv"]) || !all(res["mamba"]) {
		t.Fatalf("BatchGetV2 = %v, %v", res, err)
	}
	if st := s.Stats(); st.Sets != 6 || st.Hits != 6 || st.Gets != 6 {
		t.Errorf("Stats = %+v; want 6 pages set, asked for and served (3 per pool)", st)
	}
}

// TestStatsAddCoversEveryCounter: summing a component pool's Stats into the
// store's adds every field, so that a counter added later is not left out.
func TestStatsAddCoversEveryCounter(t *testing.T) {
	var a, b Stats
	v := reflect.ValueOf(&b).Elem()
	for i := range v.NumField() {
		v.Field(i).SetInt(int64(i + 1))
	}
	a.add(b)
	a.add(b)
	w := reflect.ValueOf(a)
	for i := range w.NumField() {
		if got := w.Field(i).Int(); got != 2*int64(i+1) {
			t.Errorf("Stats.%s after adding %d twice = %d", w.Type().Field(i).Name, i+1, got)
		}
	}
}
