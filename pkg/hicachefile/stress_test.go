//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hicache-go/hicache/pkg/hostcache"
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
					Syscalls: newErrorFS().refuseTmpfile().syscalls()}, p)
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

// stormRound is one round of a storm's actor w: it stores the keys q from
// the slots si, Clears every tenth round when it is actor 1, reads q back
// into dst, and checks each page served against the slot want(j) of the
// page q[j] was written from, counting it in hits. A write error that
// setOK allows is not a failure. It reports false once it has failed.
func stormRound(t *testing.T, p *hostcache.Pool, s *Store, w, it int, q []string, si, dst []int64, want func(j int) int64,
	setOK func(error) bool, fail func(string, ...any), hits *atomic.Int64) bool {
	ps := p.Config().PageSize
	if _, err := s.BatchSetV1(q, si); err != nil && (setOK == nil || !setOK(err)) {
		fail("actor %d: BatchSetV1: %v", w, err)
		return false
	}
	if w == 1 && it%10 == 9 {
		if err := s.Clear(); err != nil {
			fail("actor %d: Clear: %v", w, err)
			return false
		}
	}
	ok, err := s.BatchGetV1(q, dst[:len(q)*ps])
	if err != nil {
		fail("actor %d: BatchGetV1: %v", w, err)
		return false
	}
	for j := range q {
		if ok[j] {
			hits.Add(1)
			if !samePages(t, p, dst[j*ps], want(j)) {
				fail("actor %d: key %s: another identity's or a wrong page", w, q[j])
			}
		}
	}
	return true
}

// TestUnnamedWriteStormServesOwnIdentity: stores without a bound (unnamed writes) of two
// identities, two of one of them, one watching and one polling, write the
// same keys with different pages on one directory, while one of them
// Clears now and then, and a hostile neighbour renames the other
// identity's batch files over this identity's and floods the watchers'
// queues. Every page served is the reader's identity's own. Once all
// stop, a last Clear leaves nothing of that identity served by any of
// its stores, and no descriptor open.
func TestUnnamedWriteStormServesOwnIdentity(t *testing.T) {
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
	dir := shmDir(t)
	fds := openFDs(t)
	mk := func(model string, noWatch bool) *Store {
		s, err := New(Config{Dir: dir, ModelName: model, NoWatch: noWatch, PollInterval: 5 * time.Millisecond,
			MaxBatchFileBytes: int64(2 * p.PageBytes())})
		if err == nil {
			err = s.RegisterMemPoolHost(p)
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	type actor struct {
		s   *Store
		src []int64
	}
	actors := []actor{{mk("a", false), srcA}, {mk("a", true), srcA}, {mk("b", false), srcB}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var hits, renames atomic.Int64
	fail := func(f string, a ...any) { mu.Lock(); t.Errorf(f, a...); mu.Unlock() }
	deadline := time.Now().Add(time.Second)
	for w, a := range actors {
		dst, err := p.Alloc(nk * ps)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 11))
			for it := 0; time.Now().Before(deadline); it++ {
				n := 1 + r.IntN(8)
				first := r.IntN(nk - n + 1)
				q := keys[first : first+n]
				si := a.src[first*ps : (first+n)*ps]
				want := func(j int) int64 { return a.src[(first+j)*ps] }
				if !stormRound(t, p, a.s, w, it, q, si, dst, want, nil, fail, &hits) {
					return
				}
			}
		})
	}
	wg.Go(func() { // the hostile neighbour
		r := rand.New(rand.NewPCG(99, 11))
		a, b := actors[0].s, actors[2].s
		for it := 0; time.Now().Before(deadline); it++ {
			if it%50 == 49 {
				flood(t, a.v1Dir)
			}
			var from, to []string
			theirs, _ := os.ReadDir(b.v1Dir)
			for _, e := range theirs {
				if b.isBatchName(e.Name()) {
					from = append(from, e.Name())
				}
			}
			ours, _ := os.ReadDir(a.v1Dir)
			for _, e := range ours {
				if a.isBatchName(e.Name()) {
					to = append(to, e.Name())
				}
			}
			if len(from) > 0 && len(to) > 0 &&
				os.Rename(filepath.Join(b.v1Dir, from[r.IntN(len(from))]), filepath.Join(a.v1Dir, to[r.IntN(len(to))])) == nil {
				renames.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	if hits.Load() == 0 || renames.Load() == 0 {
		t.Errorf("%d read hits, %d files renamed over: the storm tested nothing", hits.Load(), renames.Load())
	}
	t.Logf("%d read hits, %d files renamed over, %d mismatches seen", hits.Load(), renames.Load(),
		actors[0].s.Stats().Mismatch+actors[1].s.Stats().Mismatch)
	if err := actors[0].s.Clear(); err != nil {
		t.Fatal(err)
	}
	for w, a := range actors[:2] {
		dst, _ := p.Alloc(nk * ps)
		ok, err := a.s.BatchGetV1(keys, dst)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(ok, true) {
			t.Errorf("actor %d: a key served after the last Clear: %v", w, ok)
		}
		if n := a.s.BatchExists(keys[:1]); n != 0 {
			t.Errorf("actor %d: k0 exists after the last Clear", w)
		}
		_ = p.Free(dst)
	}
	for _, a := range actors {
		if own, names := inflightLen(a.s); names != 0 || own > nk {
			t.Errorf("%d names expected by the watcher, %d commits in flight after the storm", own, names)
		}
		_ = a.s.Close()
	}
	if n := openFDs(t); n != fds {
		t.Errorf("%d descriptors open after the storm and Close, %d before", n, fds)
	}
}

// TestStressNoWrongPage: two stores on one directory, four goroutines
// writing and reading random keys through either, while another flips bytes
// in batch files, truncates them and clears the directory. A page reported
// true must always be its key's bytes.
func TestStressNoWrongPage(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		cfg := mhaCfg
		cfg.Pages = 64
		p := newPool(t, cfg)
		dir := t.TempDir()
		sc := Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(2 * p.PageBytes()), IOWorkers: 2, NoWatch: noWatch}
		stores := []*Store{newStore(t, sc, p), newStore(t, sc, p)}
		const nkeys = 24
		var stop atomic.Bool
		var wg sync.WaitGroup
		var bad, hits atomic.Int64
		for w := range 4 {
			slots, _ := p.Alloc(4 * cfg.PageSize)
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(w), 9))
				for !stop.Load() {
					s := stores[r.IntN(2)]
					ks := make([]string, 4)
					for i := range ks {
						ks[i] = fmt.Sprintf("k%02d", r.IntN(nkeys))
					}
					if r.IntN(2) == 0 {
						for i, k := range ks {
							if err := p.SetFromFlatDataPage(slots[i*cfg.PageSize], keyPage(k, p.PageBytes())); err != nil {
								t.Error(err)
								return
							}
						}
						_, _ = s.BatchSetV1(ks, slots)
						continue
					}
					ok, _ := s.BatchGetV1(ks, slots)
					for i, k := range ks {
						if !ok[i] {
							continue
						}
						hits.Add(1)
						if got, _ := p.GetDataPage(slots[i*cfg.PageSize]); !bytes.Equal(got, keyPage(k, p.PageBytes())) {
							bad.Add(1)
						}
					}
				}
			})
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(7, 7))
			for !stop.Load() {
				time.Sleep(2 * time.Millisecond)
				if r.IntN(20) == 0 {
					_ = stores[r.IntN(2)].Clear()
					continue
				}
				ents, _ := os.ReadDir(stores[0].v1Dir)
				for _, e := range ents {
					if !strings.HasSuffix(e.Name(), batchExt) || r.IntN(4) != 0 {
						continue
					}
					f, err := os.OpenFile(filepath.Join(stores[0].v1Dir, e.Name()), os.O_RDWR, 0)
					if err != nil {
						continue
					}
					if st, err := f.Stat(); err == nil && st.Size() > 0 {
						switch r.IntN(3) {
						case 0:
							_, _ = f.WriteAt([]byte{byte(r.Uint32()) | 1}, r.Int64N(st.Size()))
						case 1:
							_ = f.Truncate(r.Int64N(st.Size()))
						}
					}
					_ = f.Close()
				}
			}
		})
		time.Sleep(time.Second)
		stop.Store(true)
		wg.Wait()
		t.Logf("%d pages served and checked", hits.Load())
		if bad.Load() != 0 {
			t.Fatalf("%d wrong pages reported true", bad.Load())
		}
		if hits.Load() == 0 {
			t.Fatal("no page was served: the test checked nothing")
		}
	})
}
