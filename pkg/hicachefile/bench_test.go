//go:build linux

package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// benchShapes are the two shapes the package documentation quotes: the
// seed's 512-byte mock page and a Llama-3-8B page of 8 MiB.
var benchShapes = []struct {
	name string
	keys int
	cfg  hostcache.Config
}{
	{"512B-x100", 100, hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.Float16,
		PageSize: 64, LayerNum: 1, HeadNum: 1, HeadDim: 2}},
	{"8MiB-x16", 16, hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
		PageSize: 64, LayerNum: 32, HeadNum: 8, HeadDim: 128}},
}

// BenchmarkInterfaces times what the cache controller does with each
// interface: old write = GetDataPage per key + BatchSet; old read =
// GetDummyFlatDataPage per key + BatchGet + SetFromFlatDataPage; new write =
// BatchSetV1; new read = BatchGetV1. Writes start from an empty store.
//
//	go test -run=NONE -bench=Interfaces -count=6 ./pkg/hicachefile
func BenchmarkInterfaces(b *testing.B) {
	for _, shape := range benchShapes {
		cfg := shape.cfg
		cfg.Pages = 2 * shape.keys
		p := newPool(b, cfg)
		src, _ := p.Alloc(shape.keys * cfg.PageSize)
		dst, _ := p.Alloc(shape.keys * cfg.PageSize)
		fillRandom(b, p, src)
		dir := b.TempDir()
		s := newStore(b, Config{Dir: dir, ModelName: "bench"}, p)
		one := newStore(b, Config{Dir: dir, ModelName: "bench", IOWorkers: 1}, p)
		direct := newStore(b, Config{Dir: dir, ModelName: "bench", DirectIO: true}, p)
		keys := make([]string, shape.keys)
		for i := range keys {
			keys[i] = fmt.Sprintf("%064x", i)
		}
		pageStart := func(idx []int64, i int) int64 { return idx[i*cfg.PageSize] }
		bytes := int64(shape.keys * p.PageBytes())

		oldWrite := func() error {
			vals := make([][]byte, len(keys))
			for i := range keys {
				v, err := p.GetDataPage(pageStart(src, i))
				if err != nil {
					return err
				}
				vals[i] = v
			}
			_, err := s.BatchSet(keys, vals)
			return err
		}
		oldRead := func() error {
			dsts := make([][]byte, len(keys))
			for i := range dsts {
				dsts[i] = p.GetDummyFlatDataPage()
			}
			ok, err := s.BatchGet(keys, dsts)
			if err != nil {
				return err
			}
			for i := range keys {
				if !ok[i] {
					return fmt.Errorf("miss on %d", i)
				}
				if err := p.SetFromFlatDataPage(pageStart(dst, i), dsts[i]); err != nil {
					return err
				}
			}
			return nil
		}
		v1Write := func(s *Store) func() error {
			return func() error { _, err := s.BatchSetV1(keys, src); return err }
		}
		v1Read := func(s *Store) func() error {
			return func() error {
				ok, err := s.BatchGetV1(keys, dst)
				if err == nil && !all(ok) {
					err = fmt.Errorf("miss in %v", ok)
				}
				return err
			}
		}
		newWrite, newRead := v1Write(s), v1Read(s)
		oneWrite, oneRead := v1Write(one), v1Read(one)
		directRead := v1Read(direct)

		run := func(name string, write bool, op, setup func() error) {
			b.Run(shape.name+"/"+name, func(b *testing.B) {
				b.SetBytes(bytes)
				if err := setup(); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if write {
						b.StopTimer()
						if err := s.Clear(); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					if err := op(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		clearStore := s.Clear
		run("old-set", true, oldWrite, clearStore)
		run("old-get", false, oldRead, func() error { _ = s.Clear(); return oldWrite() })
		run("v1-set", true, newWrite, clearStore)
		run("v1-get", false, newRead, func() error { _ = s.Clear(); return newWrite() })
		run("v1-set-1worker", true, oneWrite, clearStore)
		run("v1-get-1worker", false, oneRead, func() error { _ = s.Clear(); return newWrite() })
		// From the device, not the page cache, where the buffers allow it.
		run("v1-get-direct", false, directRead, func() error { _ = s.Clear(); return newWrite() })
	}
}

// BenchmarkLookupBusyDir times a one-key BatchGetV1 hit in a directory of
// 20,000 batch files right after another store wrote a batch: with inotify
// the write is one event to apply; polling, a hit needs no listing either.
// Before the index followed events, this listed the whole directory.
//
// Every iteration adds a file and pays an untimed write, so run it for a
// fixed count: with the default -benchtime it grows the directory for
// minutes, and go test's 10-minute timeout then kills it before b.TempDir
// is removed.
//
//	go test -run=NONE -bench=LookupBusyDir -benchtime=100x ./pkg/hicachefile
func BenchmarkLookupBusyDir(b *testing.B) {
	for _, noWatch := range []bool{false, true} {
		b.Run(fmt.Sprintf("NoWatch=%v", noWatch), func(b *testing.B) {
			p := newPool(b, mhaCfg)
			idx, _ := p.Alloc(2 * mhaCfg.PageSize)
			fillRandom(b, p, idx)
			dir := b.TempDir()
			a := newStore(b, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
			other := newStore(b, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
			for i := range 20000 {
				name := "b" + fmt.Sprintf("%016x", i) + a.suffix + batchExt
				if err := os.WriteFile(filepath.Join(a.v1Dir, name), nil, 0o644); err != nil {
					b.Fatal(err)
				}
			}
			if ok, err := a.BatchSetV1([]string{"hot"}, idx[:mhaCfg.PageSize]); err != nil || !ok[0] {
				b.Fatal(ok, err)
			}
			i := 0
			for b.Loop() {
				b.StopTimer()
				if _, err := other.BatchSetV1([]string{fmt.Sprint("f", i)}, idx[:mhaCfg.PageSize]); err != nil {
					b.Fatal(err)
				}
				i++
				b.StartTimer()
				if ok, err := a.BatchGetV1([]string{"hot"}, idx[mhaCfg.PageSize:]); err != nil || !ok[0] {
					b.Fatal(ok, err)
				}
			}
			b.ReportMetric(float64(a.Stats().Listings), "listings")
		})
	}
}
