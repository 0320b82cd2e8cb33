package hicachefile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// Adversarial probes of the read path's interactions (trailer check,
// inodes, spare slot, many files per call).

// TestAdv2ReadMix: calls whose keys span more than maxOpenFiles batch
// files, in random order with repeats, mixed with old-format keys and
// missing keys, get exactly the pages written, whatever the IO workers and
// DirectIO.
func TestAdv2ReadMix(t *testing.T) {
	big := mhaCfg
	big.PageSize, big.LayerNum, big.HeadNum, big.HeadDim = 16, 4, 8, 128 // 256 KiB pages
	for _, large := range []bool{false, true} {
		for _, workers := range []int{1, 4} {
			for _, direct := range []bool{false, true} {
				t.Run(fmt.Sprintf("large=%v/workers=%d/direct=%v", large, workers, direct), func(t *testing.T) {
					pc, nv1, nold, perFile, maxQ := mhaCfg, 120, 20, 3, 200
					if large {
						pc, nv1, nold, perFile, maxQ = big, 60, 4, 20, 40
					}
					testAdv2ReadMix(t, pc, nv1, nold, perFile, maxQ, workers, direct)
				})
			}
		}
	}
}

func testAdv2ReadMix(t *testing.T, pc hostcache.Config, nv1, nold, perFile, maxQ, workers int, direct bool) {
	ps := pc.PageSize
	pc.Pages = nv1 + nold + maxQ + 8
	p := newPool(t, pc)
	src, err := p.Alloc((nv1 + nold) * ps)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, p, src)
	cfg := Config{Dir: t.TempDir(), ModelName: "m", IOWorkers: workers, DirectIO: direct,
		MaxBatchFileBytes: int64(perFile * p.PageBytes())}
	s := newStore(t, cfg, p)
	keys := make([]string, nv1+nold)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	// V1 pages in several calls, so that the files interleave.
	for lo := 0; lo < nv1; lo += 30 {
		if ok, err := s.BatchSetV1(keys[lo:min(nv1, lo+30)], src[lo*ps:min(nv1, lo+30)*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
	}
	for i := nv1; i < nv1+nold; i++ {
		pg, _ := p.GetDataPage(src[i*ps])
		if err := s.Set(keys[i], pg); err != nil {
			t.Fatal(err)
		}
	}
	dst, err := p.Alloc(maxQ * ps)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, uint64(workers)))
	for round := range 60 {
		n := 1 + r.IntN(maxQ)
		q := make([]string, n)
		want := make([]int, n) // source key, -1 for missing
		for j := range q {
			switch x := r.IntN(10); {
			case x == 0:
				q[j], want[j] = fmt.Sprintf("missing%d", j), -1
			case round%3 == 0 && j < nv1+nold:
				k := nv1 + nold - 1 - j%(nv1+nold) // reverse order
				q[j], want[j] = keys[k], k
			default:
				k := r.IntN(nv1 + nold)
				q[j], want[j] = keys[k], k
			}
		}
		ok, err := s.BatchGetV1(q, dst[:n*ps])
		if err != nil {
			t.Fatal(err)
		}
		for j := range q {
			if ok[j] != (want[j] >= 0) {
				t.Fatalf("round %d: key %d %q ok=%v want %v", round, j, q[j], ok[j], want[j] >= 0)
			}
			if ok[j] && !samePages(t, p, dst[j*ps], src[want[j]*ps]) {
				t.Fatalf("round %d: key %d %q wrong page", round, j, q[j])
			}
		}
	}
	if direct && pc.PageSize == 16 && s.Stats().DirectBytes == 0 {
		t.Error("DirectIO read nothing direct: the direct path went untested")
	}
}

// TestAdv2SharedDirStorm: stores of two identities (and two stores of one)
// on one directory write the same keys with different pages, under a
// byte bound, with temp files made by name (O_TMPFILE refused), while one
// of them Clears now and then: every page served is the reader's
// identity's own, no call fails (but a write whose temp file a Clear
// took), and no temp file is left.
func TestAdv2SharedDirStorm(t *testing.T) {
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

// TestAdv2GrownFileNotReadWhole: a much larger file put in place of an
// indexed one-page batch file (copied over it in place, or renamed over
// it unseen by a polling store) is a miss found without reading the big
// file's pages: the read moves no more than the page asked for and the new
// file's index tail.
func TestAdv2GrownFileNotReadWhole(t *testing.T) {
	for _, how := range []string{"copy", "rename"} {
		t.Run(how, func(t *testing.T) {
			ps := mhaCfg.PageSize
			pc := mhaCfg
			pc.Pages = 200
			p := newPool(t, pc)
			idx, _ := p.Alloc(130 * ps)
			fillRandom(t, p, idx)
			var read atomic.Int64
			sys := Syscalls{Preadv: func(fd int, iovs [][]byte, off int64) (int, error) {
				n, err := unix.Preadv(fd, iovs, off)
				read.Add(int64(max(n, 0)))
				return n, err
			}}
			dir := t.TempDir()
			s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true, Syscalls: sys}, p)
			if ok, err := s.BatchSetV1([]string{"a"}, idx[:ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			// Another model's batch of 128 pages, "a" among them.
			o := newStore(t, Config{Dir: dir, ModelName: "x"}, p)
			keys := []string{"a"}
			for i := 1; i < 128; i++ {
				keys = append(keys, fmt.Sprintf("o%d", i))
			}
			if ok, err := o.BatchSetV1(keys, idx[ps:129*ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			mine, _ := s.Locate("a")
			theirs, _ := o.Locate("a")
			putOver(t, theirs.Path, mine.Path, how == "copy")
			dst := idx[129*ps:]
			read.Store(0)
			ok, err := s.BatchGetV1([]string{"a"}, dst)
			if err != nil {
				t.Fatal(err)
			}
			if ok[0] && samePages(t, p, dst[0], idx[ps]) {
				t.Error("served the other model's page")
			}
			// The page, and the new file's index read once from its tail
			// (the store reloads a file found other than indexed).
			if got, limit := read.Load(), int64(p.PageBytes()+2*loadTail); got > limit {
				t.Errorf("BatchGetV1 read %d bytes of the file put in place, want at most %d", got, limit)
			}
		})
	}
}

// TestAdv2ClearRacesSameKeys: while one goroutine writes keys with pages B
// (through a second store of the same identity, temp files made by name),
// the main one writes them with pages A and Clears: after Clear returns,
// no store serves an A page, only B pages or misses.
func TestAdv2ClearRacesSameKeys(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		pc := mhaCfg
		pc.Pages = 64
		p := newPool(t, pc)
		const nk = 4
		srcA, _ := p.Alloc(nk * ps)
		srcB, _ := p.Alloc(nk * ps)
		fillRandom(t, p, srcA)
		fillRandom(t, p, srcB)
		dir := t.TempDir()
		cfg := Config{Dir: dir, ModelName: "m", NoWatch: noWatch, MaxBatchFileBytes: 1, Syscalls: Syscalls{Openat: refuseTmpfile}}
		s := newStore(t, cfg, p)
		o := newStore(t, cfg, p)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				keys := make([]string, nk)
				for j := range keys {
					keys[j] = fmt.Sprintf("r%d_k%d", i%50, j)
				}
				_, _ = o.BatchSetV1(keys, srcB)
			}
		}()
		dst, _ := p.Alloc(nk * ps)
		for round := range 100 {
			keys := make([]string, nk)
			for j := range keys {
				keys[j] = fmt.Sprintf("r%d_k%d", round%50, j)
			}
			if _, err := s.BatchSetV1(keys, srcA); err != nil {
				t.Fatal(err)
			}
			if err := s.Clear(); err != nil {
				t.Fatal(err)
			}
			for _, st := range []*Store{s, o} {
				ok, err := st.BatchGetV1(keys, dst)
				if err != nil {
					t.Fatal(err)
				}
				for j := range keys {
					if ok[j] && samePages(t, p, dst[j*ps], srcA[j*ps]) {
						t.Fatalf("round %d: %s served a page written before Clear", round, keys[j])
					}
				}
			}
		}
		close(stop)
		<-done
	})
}

// TestAdv2EvictedMidCall: reads of 40 keys in 40 one-page batch files
// (more than maxOpenFiles) while writes of other keys evict those files:
// no call fails, and every page served is the key's own.
func TestAdv2EvictedMidCall(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		pc := mhaCfg
		pc.Pages = 200
		p := newPool(t, pc)
		const nk = 40
		src, _ := p.Alloc(2 * nk * ps)
		fillRandom(t, p, src)
		keys := make([]string, 2*nk)
		for i := range keys {
			keys[i] = fmt.Sprintf("k%d", i)
		}
		s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", NoWatch: noWatch, MaxBatchFileBytes: 1,
			MaxBytes: (nk + 5) * oneKeyFile(p.PageBytes()), EvictionRatio: 1}, p)
		w := newStore(t, Config{Dir: s.dir, ModelName: "m", NoWatch: noWatch, MaxBatchFileBytes: 1,
			MaxBytes: (nk + 5) * oneKeyFile(p.PageBytes()), EvictionRatio: 1}, p)
		dst, _ := p.Alloc(nk * ps)
		hits := 0
		for round := range 30 {
			lo := (round % 2) * nk
			if _, err := s.BatchSetV1(keys[lo:lo+nk], src[lo*ps:(lo+nk)*ps]); err != nil {
				t.Fatal(err)
			}
			done := make(chan error)
			go func() {
				other := nk - lo
				_, err := w.BatchSetV1(keys[other:other+nk], src[other*ps:(other+nk)*ps])
				done <- err
			}()
			ok, err := s.BatchGetV1(keys[lo:lo+nk], dst)
			if err != nil {
				t.Fatal(err)
			}
			for j := range ok {
				if ok[j] {
					hits++
					if !samePages(t, p, dst[j*ps], src[(lo+j)*ps]) {
						t.Fatalf("round %d: %s: wrong page", round, keys[lo+j])
					}
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if hits == 0 {
			t.Error("no hit: nothing tested")
		}
	})
}
