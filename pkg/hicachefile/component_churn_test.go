//go:build linux

package hicachefile

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestV2ChurnUnderSharedBound: writers and readers of the KV pool and of a
// component pool on one store whose MaxBytes they share, so that each
// pool's writes evict the other's files under its reads, with a Clear now
// and then. No call fails or panics, and every page served is the key's
// own, in both pools.
func TestV2ChurnUnderSharedBound(t *testing.T) {
	d := 400 * time.Millisecond
	if testing.Short() {
		d = 150 * time.Millisecond
	}
	const (
		keySpace = 64
		perCall  = 8
	)
	kvCfg := mhaCfg
	kvCfg.Layout = hostcache.PageFirst
	kvCfg.Pages = 64
	kv := newPool(t, kvCfg)
	cc := componentCfg
	cc.Pages = 64
	comp := newPool(t, cc)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", MaxBatchFileBytes: int64(2 * kv.PageBytes()),
		MaxBytes: 12 * oneKeyFile(kv.PageBytes())}, kv)
	if err := s.RegisterPool("mamba", comp); err != nil {
		t.Fatal(err)
	}
	keyOf := func(i int) string { return fmt.Sprintf("c%03d", i) }
	alloc := func() (kvIdx, compIdx []int64) {
		kvIdx, err := kv.Alloc(perCall * kvCfg.PageSize)
		if err != nil {
			t.Fatal(err)
		}
		compIdx, err = comp.Alloc(perCall * cc.PageSize)
		if err != nil {
			t.Fatal(err)
		}
		return kvIdx, compIdx
	}
	transfers := func(keys []string, kvIdx, compIdx []int64) []Transfer {
		return []Transfer{
			{Pool: KVPool, Keys: keys, HostIndices: kvIdx[:len(keys)*kvCfg.PageSize]},
			{Pool: "mamba", Keys: keys, HostIndices: compIdx[:len(keys)*cc.PageSize]},
		}
	}
	stop := make(chan struct{})
	var served, wrong atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		kvIdx, compIdx := alloc()
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 2))
			kvPage, compPage := make([]byte, kv.PageBytes()), make([]byte, comp.PageBytes())
			untilClosed(stop, func() bool {
				start := r.IntN(keySpace - perCall)
				keys := make([]string, 1+r.IntN(perCall))
				for i := range keys {
					keys[i] = keyOf(start + i)
					keyedPage(keys[i], kvPage)
					keyedPage(keys[i]+".mamba", compPage)
					if kv.SetFromFlatDataPage(kvIdx[i*kvCfg.PageSize], kvPage) != nil || comp.SetFromFlatDataPage(compIdx[i*cc.PageSize], compPage) != nil {
						t.Error("SetFromFlatDataPage failed")
						return false
					}
				}
				if _, err := s.BatchSetV2(transfers(keys, kvIdx, compIdx)); err != nil {
					t.Errorf("BatchSetV2: %v", err)
					return false
				}
				return true
			})
		})
	}
	for w := range 2 {
		kvIdx, compIdx := alloc()
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			untilClosed(stop, func() bool {
				start := r.IntN(keySpace - perCall)
				keys := make([]string, 1+r.IntN(perCall))
				for i := range keys {
					keys[i] = keyOf(start + i)
				}
				res, err := s.BatchGetV2(transfers(keys, kvIdx, compIdx))
				if err != nil {
					t.Errorf("BatchGetV2: %v", err)
					return false
				}
				for i, k := range keys {
					if res["kv"][i] {
						served.Add(1)
						got, _ := kv.GetDataPage(kvIdx[i*kvCfg.PageSize])
						if !bytes.Equal(got, keyPage(k, kv.PageBytes())) {
							wrong.Add(1)
						}
					}
					if res["mamba"][i] {
						served.Add(1)
						got, _ := comp.GetDataPage(compIdx[i*cc.PageSize])
						if !bytes.Equal(got, keyPage(k+".mamba", comp.PageBytes())) {
							wrong.Add(1)
						}
					}
				}
				return true
			})
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if err := s.Clear(); err != nil {
				t.Errorf("Clear: %v", err)
				return
			}
		}
	})
	time.Sleep(d)
	close(stop)
	wg.Wait()
	if wrong.Load() != 0 {
		t.Fatalf("%d of %d pages served were not the key's", wrong.Load(), served.Load())
	}
	if served.Load() == 0 {
		t.Fatal("no page served")
	}
	t.Logf("%d pages served and checked", served.Load())
}
