//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestConcurrentV1 runs BatchSetV1, BatchGetV1, Exists and Locate from
// several goroutines on one store with disjoint keys, while a second store
// on the same directory reads what the first wrote. Run it with -race.
func TestConcurrentV1(t *testing.T) {
	const (
		workers = 4
		rounds  = 12
		perCall = 3
	)
	cfg := mhaCfg
	cfg.Layout = hostcache.PageFirst
	cfg.Pages = workers * 3 * perCall
	p := newPool(t, cfg)
	dir := t.TempDir()
	sc := Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(2 * p.PageBytes())}
	s := newStore(t, sc, p)
	peer := newStore(t, sc, p)

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		src, err := p.Alloc(perCall * cfg.PageSize)
		if err != nil {
			t.Fatal(err)
		}
		dst, _ := p.Alloc(perCall * cfg.PageSize)
		peerDst, _ := p.Alloc(perCall * cfg.PageSize)
		wg.Go(func() {
			errs <- func() error {
				for r := range rounds {
					keys := make([]string, perCall)
					for i := range keys {
						keys[i] = fmt.Sprintf("w%dr%di%d", w, r, i)
					}
					fillRandom(t, p, src)
					if s.Exists(keys[0]) {
						return fmt.Errorf("%s exists before it was written", keys[0])
					}
					ok, err := s.BatchSetV1(keys, src)
					if err != nil || !all(ok) {
						return fmt.Errorf("BatchSetV1(%v) = %v, %v", keys, ok, err)
					}
					if n := s.BatchExists(keys); n != perCall {
						return fmt.Errorf("BatchExists(%v) = %d just after the write", keys, n)
					}
					if _, found := s.Locate(keys[perCall-1]); !found {
						return fmt.Errorf("Locate(%s) missed just after the write", keys[perCall-1])
					}
					for _, reader := range []struct {
						name string
						s    *Store
						dst  []int64
					}{{"writer", s, dst}, {"peer", peer, peerDst}} {
						ok, err = reader.s.BatchGetV1(keys, reader.dst)
						if err != nil || !all(ok) {
							return fmt.Errorf("%s: BatchGetV1(%v) = %v, %v; stats %+v", reader.name, keys, ok, err, reader.s.Stats())
						}
						for i := range perCall {
							want, _ := p.GetDataPage(src[i*cfg.PageSize])
							got, _ := p.GetDataPage(reader.dst[i*cfg.PageSize])
							if !bytes.Equal(want, got) {
								return fmt.Errorf("%s read back differs", keys[i])
							}
						}
					}
				}
				return nil
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	st := s.Stats()
	if st.Sets != workers*rounds*perCall || st.Hits != workers*rounds*perCall || st.Corrupt != 0 || st.Errors != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestConcurrentOldAndClear mixes the old interface with V1 calls and a
// Clear on another store of the same directory, to give the race detector
// the index's refresh and reset paths.
//
// Clear removes the store's temp files, among them those of its own writes
// in flight, whose renames then fail with ENOENT: a write of other that
// races other.Clear may fail that way (reported as an open issue), but no
// other way, and s is never disturbed.
func TestConcurrentOldAndClear(t *testing.T) {
	p := newPool(t, mhaCfg)
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	other := newStore(t, Config{Dir: dir, ModelName: "m", TPRank: 1, TPSize: 2}, p)
	var wg sync.WaitGroup
	for w := range 3 {
		idx, err := p.Alloc(mhaCfg.PageSize)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			page := p.GetDummyFlatDataPage()
			for r := range 20 {
				k := fmt.Sprintf("o%dr%d", w, r)
				if err := s.Set(k, page); err != nil {
					t.Error(err)
				}
				if err := s.Get(k, page); err != nil {
					t.Error(err)
				}
				if ok, err := s.BatchSetV1([]string{"v" + k}, idx); err != nil || !ok[0] {
					t.Error(ok, err)
				}
				if ok, err := other.BatchSetV1([]string{"v" + k}, idx); err != nil && !errors.Is(err, fs.ErrNotExist) || err == nil && !ok[0] {
					t.Error(ok, err)
				}
				if r%5 == 0 {
					if err := other.Clear(); err != nil {
						t.Error(err)
					}
				}
				_ = s.Stats()
			}
		})
	}
	wg.Wait()
	if n := s.Stats().Sets; n != 3*20*2 {
		t.Errorf("Sets = %d", n)
	}
}
