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

// churnMode says what removes a churned store's files while it is read.
type churnMode struct {
	name string
	// cfg adjusts the store's configuration.
	cfg func(c *Config, pageBytes int)
	// disturb runs while the readers and writers do, until stop closes.
	disturb func(t *testing.T, s *Store, dir string, stop <-chan struct{})
}

// churnModes are the ways a store's files come and go under its reads:
// its own eviction, its own Clear, and another store's Clear.
var churnModes = []churnMode{
	{
		name: "eviction",
		cfg: func(c *Config, pageBytes int) {
			c.MaxBytes = int64(24 * pageBytes)
		},
	},
	{
		name: "own-clear",
		disturb: func(t *testing.T, s *Store, _ string, stop <-chan struct{}) {
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if err := s.Clear(); err != nil {
					t.Errorf("Clear: %v", err)
				}
			}
		},
	},
	{
		name: "other-store-clear",
		disturb: func(t *testing.T, _ *Store, dir string, stop <-chan struct{}) {
			other, err := New(Config{Dir: dir, ModelName: "m"})
			if err != nil {
				t.Error(err)
				return
			}
			defer other.Close()
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if err := other.Clear(); err != nil {
					t.Errorf("other Clear: %v", err)
				}
			}
		},
	},
}

// TestReadsSurviveFileChurn reads and writes one store from several
// goroutines while its batch files are evicted or cleared, so that file ids
// are freed and taken by new files between a read's lookup and its use of
// the file. No call may fail or panic, and every page served must be the
// key's own; a file that went under a read is not counted corrupt.
func TestReadsSurviveFileChurn(t *testing.T) {
	d := 400 * time.Millisecond
	if testing.Short() {
		d = 150 * time.Millisecond
	}
	for _, m := range churnModes {
		t.Run(m.name, func(t *testing.T) {
			cfg := mhaCfg
			cfg.Layout = hostcache.PageFirst
			cfg.Pages = 128
			p := newPool(t, cfg)
			dir := t.TempDir()
			sc := Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(4 * p.PageBytes())}
			if m.cfg != nil {
				m.cfg(&sc, p.PageBytes())
			}
			s := newStore(t, sc, p)
			const (
				keySpace = 96
				perCall  = 16
			)
			keyOf := func(i int) string { return fmt.Sprintf("churn%03d", i) }
			stop := make(chan struct{})
			var served, wrong atomic.Int64
			var wg sync.WaitGroup
			for w := range 2 {
				idx, err := p.Alloc(perCall * cfg.PageSize)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() { // writer
					r := rand.New(rand.NewPCG(uint64(w), 1))
					page := make([]byte, p.PageBytes())
					untilClosed(stop, func() bool {
						// Batches of every size, so that a reused file id
						// names a file of another size and layout of entries.
						start := r.IntN(keySpace - perCall)
						keys := make([]string, 1+r.IntN(perCall))
						for i := range keys {
							keys[i] = keyOf(start + i)
							keyedPage(keys[i], page)
							if err := p.SetFromFlatDataPage(idx[i*cfg.PageSize], page); err != nil {
								t.Error(err)
								return false
							}
						}
						if _, err := s.BatchSetV1(keys, idx[:len(keys)*cfg.PageSize]); err != nil {
							t.Errorf("BatchSetV1: %v", err)
							return false
						}
						return true
					})
				})
			}
			for w := range 2 {
				idx, err := p.Alloc(perCall * cfg.PageSize)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() { // reader
					r := rand.New(rand.NewPCG(uint64(w), 2))
					want := make([]byte, p.PageBytes())
					untilClosed(stop, func() bool {
						start := r.IntN(keySpace - perCall)
						keys := make([]string, perCall)
						for i := range keys {
							keys[i] = keyOf(start + i)
						}
						ok, err := s.BatchGetV1(keys, idx)
						if err != nil {
							t.Errorf("BatchGetV1: %v", err)
							return false
						}
						for i, hit := range ok {
							if !hit {
								continue
							}
							served.Add(1)
							keyedPage(keys[i], want)
							got, _ := p.GetDataPage(idx[i*cfg.PageSize])
							if !bytes.Equal(got, want) {
								wrong.Add(1)
							}
						}
						return true
					})
				})
			}
			if m.disturb != nil {
				wg.Go(func() { m.disturb(t, s, dir, stop) })
			}
			time.Sleep(d)
			close(stop)
			wg.Wait()
			st := s.Stats()
			t.Logf("served %d pages, %d wrong; stats %+v", served.Load(), wrong.Load(), st)
			if wrong.Load() != 0 {
				t.Errorf("%d of %d pages served were not their key's", wrong.Load(), served.Load())
			}
			if served.Load() == 0 {
				t.Errorf("no page was served: the churn left nothing to read")
			}
			if st.Corrupt != 0 {
				t.Errorf("Stats.Corrupt = %d: no file was damaged, only removed", st.Corrupt)
			}
		})
	}
}
