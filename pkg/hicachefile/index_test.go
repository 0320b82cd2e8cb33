//go:build linux

package hicachefile

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

// TestLookupAfterConcurrentRefresh: a lookup that misses waits for the
// directory scan another goroutine is running. When that scan loads the
// page, the lookup must find it, although its own refresh then has nothing
// left to scan. The test plays the other goroutine: it holds the scan lock,
// waits until BatchGetV1 has missed and is blocked on the lock, then does
// the scan's work by hand.
func TestLookupAfterConcurrentRefresh(t *testing.T) {
	p := newPool(t, mhaCfg)
	cfg := Config{Dir: t.TempDir(), ModelName: "m"}
	reader := newStore(t, cfg, p)
	writer := newStore(t, cfg, p)
	idx, _ := p.Alloc(mhaCfg.PageSize)
	fillRandom(t, p, idx)
	if ok, err := writer.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	loc, _ := writer.Locate("k")

	x := &reader.scan
	x.mu.Lock()
	done := make(chan []bool)
	go func() {
		ok, _ := reader.BatchGetV1([]string{"k"}, idx)
		done <- ok
	}()
	for reader.Stats().Gets == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // BatchGetV1 has missed and waits for the scan lock

	// The other goroutine's scan: load the new file, note the mtime.
	var st unix.Stat_t
	if err := unix.Fstat(reader.v1fd(), &st); err != nil {
		t.Fatal(err)
	}
	name := loc.Path[len(reader.v1Dir)+1:]
	got := reader.load([]string{name})
	if len(got.fails) != 0 {
		t.Fatal(got.fails[0].err)
	}
	reader.merge(got)
	x.mtime = st.Mtim
	x.mu.Unlock()

	if ok := <-done; !ok[0] {
		t.Fatal("BatchGetV1 missed a page that the index held when its lookup retried")
	}
}

// TestRefreshKeepsOwnWrites: a scan must forget only batch files that were
// deleted, never one that this store renamed into place after the scan
// listed the directory. Writers check, right after each BatchSetV1, that
// the index still holds their page while other goroutines rescan.
func TestRefreshKeepsOwnWrites(t *testing.T) {
	for _, noWatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoWatch=%v", noWatch), func(t *testing.T) { testRefreshKeepsOwnWrites(t, noWatch) })
	}
}

func testRefreshKeepsOwnWrites(t *testing.T, noWatch bool) {
	const writers, rounds = 3, 60
	cfg := mhaCfg
	cfg.Pages = writers
	p := newPool(t, cfg)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", NoWatch: noWatch}, p)
	held := func(k string) bool {
		refs := make([]index.Ref, 1)
		return s.idx.Lookup([]uint64{s.idx.Hash(k)}, 0, refs, nil) == 1
	}

	stop := make(chan struct{})
	var refreshers sync.WaitGroup
	for range 2 {
		refreshers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					s.refresh(true)
				}
			}
		})
	}
	var lost atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		idx, _ := p.Alloc(cfg.PageSize)
		wg.Go(func() {
			for r := range rounds {
				k := fmt.Sprintf("w%dr%d", w, r)
				if ok, err := s.BatchSetV1([]string{k}, idx); err != nil || !ok[0] {
					t.Error(ok, err)
					return
				}
				for range 200 {
					if !held(k) {
						lost.Add(1)
						break
					}
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	refreshers.Wait()
	if n := lost.Load(); n > 0 {
		t.Errorf("a rescan forgot %d of %d pages this store had just written", n, writers*rounds)
	}
}

// TestDigestMatchCheckedAgainstFile: the index keeps only digests, so a
// lookup may find a copy of another key with the same digest. The read
// checks the full key against the file's own index and reports a miss,
// never the other key's page. The test forges that case by indexing the
// file of key "a" under the digest of "c".
func TestDigestMatchCheckedAgainstFile(t *testing.T) {
	p, idx := randomPages(t, 2)
	ps := mhaCfg.PageSize
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	if ok, err := s.BatchSetV1([]string{"a"}, idx[:ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	loc, _ := s.Locate("a")
	name := loc.Path[len(s.v1Dir)+1:]
	refs := make([]index.Ref, 1)
	s.idx.Lookup([]uint64{s.idx.Hash("a")}, 0, refs, nil)
	_, meta, _ := s.idx.File(refs[0].File)
	s.idx.AddHashed(name, meta, []uint64{s.idx.Hash("c")}, []uint32{refs[0].Ent}, []uint32{refs[0].Page})
	if ok, err := s.BatchGetV1([]string{"c"}, idx[ps:]); err != nil || ok[0] {
		t.Fatalf("BatchGetV1(c) = %v, %v: the page of a was served for c", ok, err)
	}
	if n := s.idx.Lookup([]uint64{s.idx.Hash("c")}, 0, refs, nil); n != 0 {
		t.Error("the copy that failed its key check is still indexed")
	}
}
