package hostcache_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestConcurrentAllocFreeMeta has goroutines allocate, describe, stamp and
// free pages at once. A page handed to two goroutines shows as a foreign
// stamp (and, under -race, as a data race); a lost or duplicated free shows
// in Available at the end.
func TestConcurrentAllocFreeMeta(t *testing.T) {
	const ps, pages, workers, rounds = 4, 24, 8, 300
	p, err := hostcache.New(hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.LayerFirst, DType: hostcache.Float16,
		PageSize: ps, Pages: pages, LayerNum: 2, HeadNum: 2, HeadDim: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	base, n := p.Region()
	end := base + uintptr(n)

	var wg sync.WaitGroup
	var stop atomic.Bool
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			stamp := bytes.Repeat([]byte{byte(w + 1)}, p.PageBytes())
			for range rounds {
				if stop.Load() {
					return
				}
				idx, err := p.Alloc((1 + rng.IntN(3)) * ps)
				if errors.Is(err, hostcache.ErrNoSpace) {
					runtime.Gosched()
					continue
				}
				if err != nil {
					t.Error(err)
					stop.Store(true)
					return
				}
				ptrs, sizes, err := p.GetPageBufferMeta(idx)
				if err != nil || len(ptrs) != len(idx)/ps*p.BuffersPerPage() {
					t.Errorf("GetPageBufferMeta: %d pointers, %v", len(ptrs), err)
					stop.Store(true)
					return
				}
				for i, ptr := range ptrs {
					if ptr < base || ptr+uintptr(sizes[i]) > end {
						t.Errorf("buffer %d at %#x+%d outside the pool [%#x, %#x)", i, ptr, sizes[i], base, end)
					}
				}
				for i := 0; i < len(idx); i += ps {
					if err := p.SetFromFlatDataPage(idx[i], stamp); err != nil {
						t.Error(err)
					}
				}
				runtime.Gosched()
				for i := 0; i < len(idx); i += ps {
					got, err := p.GetDataPage(idx[i])
					if err != nil || !bytes.Equal(got, stamp) {
						t.Errorf("worker %d: page at slot %d changed under it (err %v)", w, idx[i], err)
						stop.Store(true)
					}
				}
				if err := p.Free(idx); err != nil {
					t.Error(err)
					stop.Store(true)
					return
				}
			}
		})
	}
	var reader sync.WaitGroup
	reader.Go(func() { // reads the shared state while the workers change it
		for !stop.Load() {
			if a := p.Available(); a < 0 || a > pages*ps || a%ps != 0 {
				t.Errorf("Available() = %d", a)
			}
			if b, _ := p.Region(); b != base {
				t.Errorf("Region() moved from %#x to %#x", base, b)
			}
			runtime.Gosched()
		}
	})
	wg.Wait()
	stop.Store(true)
	reader.Wait()
	if got := p.Available(); got != pages*ps {
		t.Errorf("Available() = %d after every page was freed, want %d", got, pages*ps)
	}
}

// TestCloseWhileBusy closes a pool while goroutines call into it: every call
// either works or returns ErrClosed, and once one has seen ErrClosed, so do
// all of that goroutine's later calls.
func TestCloseWhileBusy(t *testing.T) {
	const ps = 2
	p, err := hostcache.New(hostcache.Config{Kind: hostcache.MLA, Layout: hostcache.PageFirst, DType: hostcache.Float32,
		PageSize: ps, Pages: 16, LayerNum: 2, KVLoraRank: 4, QKRopeHeadDim: 2})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var calls atomic.Int64
	for range 4 {
		wg.Go(func() {
			closed := false
			check := func(op string, err error) {
				calls.Add(1)
				switch {
				case errors.Is(err, hostcache.ErrClosed):
					closed = true
				case err != nil && !errors.Is(err, hostcache.ErrNoSpace):
					t.Errorf("%s: %v", op, err)
				case closed:
					t.Errorf("%s succeeded after an earlier call saw ErrClosed", op)
				}
			}
			for i := 0; i < 200 || !closed; i++ {
				idx, err := p.Alloc(ps)
				check("Alloc", err)
				if err != nil {
					// Only metadata for a page this goroutine does not own.
					_, _, err = p.GetPageBufferMeta([]int64{0, 1})
					check("GetPageBufferMeta", err)
					continue
				}
				_, _, err = p.GetPageBufferMeta(idx)
				check("GetPageBufferMeta", err)
				_, err = p.GetDataPage(idx[0])
				check("GetDataPage", err)
				check("SetFromFlatDataPage", p.SetFromFlatDataPage(idx[0], p.GetDummyFlatDataPage()))
				check("Free", p.Free(idx))
				runtime.Gosched()
			}
		})
	}
	for calls.Load() < 100 {
		runtime.Gosched()
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := p.Close(); !errors.Is(err, hostcache.ErrClosed) {
		t.Errorf("second Close() = %v, want ErrClosed", err)
	}
}

// TestPinHoldsClose pins a pool: Close waits until Unpin, and Pin after
// Close returns ErrClosed.
func TestPinHoldsClose(t *testing.T) {
	p, err := hostcache.New(hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.Float16,
		PageSize: 4, Pages: 4, LayerNum: 1, HeadNum: 1, HeadDim: 8})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Pin(); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while the pool was pinned", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, _, err := p.GetPageBufferMeta([]int64{0, 1, 2, 3}); err != nil {
		t.Errorf("the pinned pool's memory went before Unpin: %v", err)
	}
	p.Unpin()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := p.Pin(); !errors.Is(err, hostcache.ErrClosed) {
		t.Errorf("Pin after Close = %v, want ErrClosed", err)
	}
}
