package hicachefile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSharedDirStormServesOwnIdentity: stores of two identities (and two stores of one)
// on one directory write the same keys with different pages, under a
// byte bound, with temp files made by name (O_TMPFILE refused), while one
// of them Clears now and then: every page served is the reader's
// identity's own, no call fails (but a write whose temp file a Clear
// took), and no temp file is left.
func TestSharedDirStormServesOwnIdentity(t *testing.T) {
	for _, noWatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoWatch=%v", noWatch), func(t *testing.T) {
			ps := mhaCfg.PageSize
			pc := mhaCfg
			pc.Pages = 400
			p := newPool(t, pc)
			const nk = 40
			srcA, _ := p.Alloc(nk * ps)
			srcB, _ := p.Alloc(nk * ps)
			fillRandom(t, p, srcA)
			fillRandom(t, p, srcB)
			keys := make([]string, nk)
			for i := range keys {
				keys[i] = fmt.Sprintf("k%d", i)
			}
			dir := t.TempDir()
			mk := func(model string) *Store {
				return newStore(t, Config{Dir: dir, ModelName: model, NoWatch: noWatch, PollInterval: 5 * time.Millisecond,
					MaxBytes: 12 * oneKeyFile(p.PageBytes()), EvictionRatio: 1, MaxBatchFileBytes: int64(2 * p.PageBytes()),
					Syscalls: Syscalls{Openat: refuseTmpfile}}, p)
			}
			type actor struct {
				s   *Store
				src []int64
			}
			actors := []actor{{mk("a"), srcA}, {mk("a"), srcA}, {mk("b"), srcB}}
			var wg sync.WaitGroup
			var mu sync.Mutex
			var hits atomic.Int64
			fail := func(f string, a ...any) { mu.Lock(); t.Errorf(f, a...); mu.Unlock() }
			deadline := time.Now().Add(1500 * time.Millisecond)
			for w, a := range actors {
				dst, err := p.Alloc(nk * ps)
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(w), 7))
					for it := 0; time.Now().Before(deadline); it++ {
						n := 1 + r.IntN(8)
						q := make([]string, n)
						si := make([]int64, 0, n*ps)
						which := make([]int, n)
						for j := range q {
							k := r.IntN(nk)
							for slices := 0; slices < j; slices++ {
								if which[slices] == k {
									k = (k + 1) % nk
									slices = -1
								}
							}
							q[j], which[j] = keys[k], k
							si = append(si, a.src[k*ps:(k+1)*ps]...)
						}
						// A write in progress may lose its temp file to
						// another store's Clear, and fail (Clear's doc).
						tempGone := func(err error) bool { return errors.Is(err, errTempGone) }
						want := func(j int) int64 { return a.src[which[j]*ps] }
						if !stormRound(t, p, a.s, w, it, q, si, dst, want, tempGone, fail, &hits) {
							return
						}
					}
				}()
			}
			wg.Wait()
			if hits.Load() == 0 {
				t.Error("no read hit: the storm tested nothing")
			}
			for _, a := range actors {
				if left := tempsIn(t, a.s); len(left) > 0 {
					t.Errorf("temp files left: %v", left)
				}
			}
		})
	}
}
