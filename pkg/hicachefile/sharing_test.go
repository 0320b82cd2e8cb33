//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestForeignWriteDuringOwnWrite: a page another store renames into place
// while this store is writing its own batch must still be found, and stay
// found after more writes of this store's own.
func TestForeignWriteDuringOwnWrite(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 2)
		dir := t.TempDir()
		b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		armed := true
		// B writes just before A's batch file gets its name, by a link
		// (an unnamed file) or a rename (a temp file).
		placing := func(np string) {
			if armed && strings.HasSuffix(np, batchExt) {
				armed = false
				if ok, err := b.BatchSetV1([]string{"kb"}, idx[ps:]); err != nil || !ok[0] {
					t.Errorf("B: %v %v", ok, err)
				}
			}
		}
		sys := newErrorFS().before(opRenameat|opLinkat, func(c *sysCall) { placing(c.path) }).syscalls()
		a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, Syscalls: sys}, p)
		if ok, err := a.BatchSetV1([]string{"ka"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if !a.Exists("kb") {
			t.Error("Exists(kb) = false although B wrote kb before A's write finished")
		}
		if ok, _ := a.BatchGetV1([]string{"kb"}, idx[:ps]); !ok[0] {
			t.Error("BatchGetV1(kb) = false")
		}
		fillRandom(t, p, idx[:ps])
		if ok, err := a.BatchSetV1([]string{"ka2"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if !a.Exists("kb") {
			t.Error("kb lost after another own write")
		}
	})
}

// TestForeignClearSeen: after another store clears the directory, this
// store must neither report the cleared keys as present nor skip writing
// them again.
func TestForeignClearSeen(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		p, idx := randomPages(t, 1)
		dir := t.TempDir()
		a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		if ok, err := a.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if err := b.Clear(); err != nil {
			t.Fatal(err)
		}
		if a.Exists("k") {
			t.Fatal("a cleared key still exists")
		}
		if ok, _ := a.BatchGetV1([]string{"k"}, idx); ok[0] {
			t.Fatal("a cleared page was served")
		}
		before := a.Stats().Sets
		if ok, err := a.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if a.Stats().Sets != before+1 {
			t.Fatal("BatchSetV1 skipped a key whose file another store had cleared")
		}
		if !b.Exists("k") {
			t.Fatal("the rewritten key is not found by the store that cleared it")
		}
	})
}

// TestTransientLoadFailureRetried: one transient failure (EIO) while
// loading another store's batch file must not hide its pages for good.
// (EMFILE is waited out within the open itself.)
func TestTransientLoadFailureRetried(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 2)
		dir := t.TempDir()
		var armed atomic.Bool
		sys := newErrorFS().fail(opOpenat, func(c *sysCall) bool { // once armed, the next open of a batch file
			return strings.HasSuffix(c.path, batchExt) && armed.CompareAndSwap(true, false)
		}, unix.EIO).syscalls()
		a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, Syscalls: sys}, p)
		b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		if ok, err := b.BatchSetV1([]string{"kb"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		armed.Store(true)
		found := a.Exists("kb") // the load fails here, or on the retry below
		if armed.Load() {
			t.Fatal("setup: the fault did not fire")
		}
		if !found && !a.Exists("kb") {
			t.Errorf("kb not found after a transient EMFILE; stats %+v", a.Stats())
		}
		if st := a.Stats(); st.SkippedFiles != 0 || st.Errors == 0 {
			t.Errorf("a transient failure counted as a skipped file: %+v", st)
		}
	})
}

// TestExistsIgnoresForeignDtype: once a pool is registered, Exists counts
// only copies that pool can load.
func TestExistsIgnoresForeignDtype(t *testing.T) {
	dir := t.TempDir()
	p16 := newPool(t, mhaCfg)
	bcfg := mhaCfg
	bcfg.DType = hostcache.BFloat16
	pbf := newPool(t, bcfg)
	w := newStore(t, Config{Dir: dir, ModelName: "m"}, p16)
	i16, _ := p16.Alloc(mhaCfg.PageSize)
	fillRandom(t, p16, i16)
	if ok, err := w.BatchSetV1([]string{"k"}, i16); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	r := newStore(t, Config{Dir: dir, ModelName: "m"}, pbf)
	if r.Exists("k") {
		t.Error("Exists(k) is true for a pool that cannot load the only copy")
	}
	if !w.Exists("k") {
		t.Error("Exists(k) is false for the pool that wrote it")
	}
}

// TestOverlappingDestinations: two keys read into the same slots would leave
// one key's bytes under both reported trues, so it is a call-level error.
func TestOverlappingDestinations(t *testing.T) {
	ps := mhaCfg.PageSize
	p := newPool(t, mhaCfg)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	src, _ := p.Alloc(2 * ps)
	dst, _ := p.Alloc(ps)
	fillRandom(t, p, src)
	if ok, err := s.BatchSetV1([]string{"a", "b"}, src); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	ok, err := s.BatchGetV1([]string{"a", "b"}, append(append([]int64{}, dst...), dst...))
	if !errors.Is(err, ErrLength) || ok[0] || ok[1] {
		t.Fatalf("BatchGetV1 into shared slots = %v, %v; want ErrLength, all false", ok, err)
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

// TestPollIntervalListsUnderStaleMtime: a polling store whose V1 directory's
// mtime does not change (as a network client's attribute cache shows it)
// finds another store's batch file by listing once PollInterval has passed,
// never before, and callers that miss at once share one listing; with a
// negative PollInterval it lists only on an mtime change.
func TestPollIntervalListsUnderStaleMtime(t *testing.T) {
	for _, tc := range []struct {
		name string
		iv   time.Duration
		due  bool // the last listing is made older than iv
		want bool
	}{
		{"mtime only", -1, true, false},
		{"not due", time.Hour, false, false},
		{"due", time.Hour, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, idx := randomPages(t, 1)
			dir := t.TempDir()
			b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true, PollInterval: tc.iv}, p)
			var before unix.Stat_t
			if err := unix.Stat(b.v1Dir, &before); err != nil {
				t.Fatal(err)
			}
			a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true}, p)
			if ok, err := a.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
			// The mtime b saw at its last listing, as a stale attribute cache shows it.
			if err := unix.UtimesNano(b.v1Dir, []unix.Timespec{before.Atim, before.Mtim}); err != nil {
				t.Fatal(err)
			}
			if tc.due {
				b.scan.mu.Lock()
				b.scan.at = b.scan.at.Add(-2 * time.Hour)
				b.scan.mu.Unlock()
			}
			listings := b.Stats().Listings
			var wg sync.WaitGroup
			got := make([]bool, 8)
			for i := range got {
				wg.Go(func() { got[i] = b.Exists("k") })
			}
			wg.Wait()
			n := b.Stats().Listings - listings
			for i, g := range got {
				if g != tc.want {
					t.Errorf("caller %d: Exists(k) = %v, want %v", i, g, tc.want)
				}
			}
			if want := map[bool]int64{true: 1, false: 0}[tc.want]; n != want {
				t.Errorf("%d listings for 8 concurrent misses, want %d", n, want)
			}
		})
	}
}
