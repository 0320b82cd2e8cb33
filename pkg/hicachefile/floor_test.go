//go:build linux

package hicachefile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/crc32c"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// floorDirs returns the directories the floor benchmarks run in: a tmpfs
// (mounted for the benchmark when running as root, else /dev/shm) and the
// default temp dir (ext4 on the project's machine).
func floorDirs(b *testing.B) []struct{ name, dir string } {
	tmpfs := b.TempDir()
	if unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=2g") == nil {
		b.Cleanup(func() { _ = unix.Unmount(tmpfs, unix.MNT_DETACH) })
	} else {
		d, err := os.MkdirTemp("/dev/shm", "hicache-floor")
		if err != nil {
			b.Skip("no tmpfs:", err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(d) })
		tmpfs = d
	}
	return []struct{ name, dir string }{{"tmpfs", tmpfs}, {"disk", b.TempDir()}}
}

// floor is the cheapest correct code that moves the same pages in the same
// format with the same durability as BatchSetV1 and BatchGetV1: write is one
// temp file created O_EXCL, one pwritev of the pages and an index, close,
// rename; read is open, one preadv into the pool buffers, CRC32C per page,
// close. Its preadv and pwritev are the store's own (no allocation per
// call), and, like the store's, split at the kernel's 1024 iovecs.
type floor struct {
	dir   string
	pages [][]byte // one buffer per page: seedCfg page_first has K and V, so two
	bpp   int
	crcs  []uint32
	got   []uint32 // readChecked's CRCs
	n     int
	ident []byte // the store's identity, written after the index as the store does
}

// write stores the pages under keys as the file name, and returns its error.
func (f *floor) write(keys []string, name string) error {
	entries := make([]batchfile.Entry, f.n)
	pageLen := int64(0)
	for _, b := range f.pages[:f.bpp] {
		pageLen += int64(len(b))
	}
	for i := range f.n {
		crc := uint32(0)
		for _, b := range f.pages[i*f.bpp : (i+1)*f.bpp] {
			crc = crc32.Update(crc, castagnoli, b)
		}
		entries[i] = batchfile.Entry{Key: keys[i], Off: int64(i) * pageLen, Length: pageLen, CRC: crc}
	}
	iov := append(f.pages[:len(f.pages):len(f.pages)], batchfile.AppendIndex(nil, entries, 1, f.ident))
	tmp := filepath.Join(f.dir, "."+name+".tmp")
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	if err := vectored(pwritevRaw, fd, iov, 0); err != nil {
		_ = unix.Close(fd)
		return err
	}
	if err := unix.Close(fd); err != nil {
		return err
	}
	return unix.Rename(tmp, filepath.Join(f.dir, name))
}

// read loads the file name into the pages and checks each page's CRC32C.
func (f *floor) read(name string) error {
	fd, err := unix.Open(filepath.Join(f.dir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := vectored(preadvRaw, fd, f.pages, 0); err != nil {
		return err
	}
	for i := range f.n {
		crc := uint32(0)
		for _, b := range f.pages[i*f.bpp : (i+1)*f.bpp] {
			crc = crc32.Update(crc, castagnoli, b)
		}
		if crc != f.crcs[i] {
			return fmt.Errorf("floor: page %d CRC", i)
		}
	}
	return nil
}

// readChecked is read with the checks the floor leaves out and a store
// must make: the file's index, identity and trailer come in the same preadv
// as the pages (into tail, which must be exactly their size), and each
// page's key is compared in full with its entry, the entry's offset and
// length with the page's, its CRC32C with the entry's, and the trailer's
// checksum with the one written (tag). Its CRC32Cs are the store's
// (crc32c.Pages, three pages at once), not read's (hash/crc32 a page at a
// time), so that x-checked is the store's design alone. The store's own costs, which this
// leaves out, are its index lookups and the translation of host indices
// into page buffers.
func (f *floor) readChecked(name string, keys []string, iov [][]byte, tail []byte, tag uint32) error {
	fd, err := unix.Open(filepath.Join(f.dir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := vectored(preadvRaw, fd, iov, 0); err != nil {
		return err
	}
	pageLen := int64(0)
	for _, b := range f.pages[:f.bpp] {
		pageLen += int64(len(b))
	}
	if len(f.got) < f.n {
		f.got = make([]uint32, f.n)
	}
	crc32c.Pages(f.pages, f.bpp, f.got[:f.n])
	e := 0
	for i := range f.n {
		crc := f.got[i]
		k := int(binary.LittleEndian.Uint16(tail[e:]))
		if k != len(keys[i]) || string(tail[e+2:e+2+k]) != keys[i] {
			return fmt.Errorf("floor: key %d", i)
		}
		rest := tail[e+2+k:]
		if int64(binary.LittleEndian.Uint64(rest)) != int64(i)*pageLen || int64(binary.LittleEndian.Uint64(rest[8:])) != pageLen ||
			binary.LittleEndian.Uint32(rest[16:]) != crc {
			return fmt.Errorf("floor: page %d entry or CRC", i)
		}
		e += entryFixed + k
	}
	if batchfile.Tag(tail) != tag {
		return errors.New("floor: trailer")
	}
	return nil
}

// floorNs are the batch sizes the floor benchmarks run.
var floorNs = []int{1, 10, 100, 1000, 10000}

// BenchmarkFloor measures BatchSetV1 and BatchGetV1 of n 512-byte seed
// pages with SGLang-style keys against the floor (see floor), alternating
// the two in one loop so that both see the same noise, and reports:
// x-floor, the store's time over the floor's; x-floor-cpu, the same for
// the process's CPU time, steadier on a busy machine; syscalls/op, the system
// calls the store made through its Syscalls seam per call (all but the
// read(2) of pending inotify events a write call makes); allocs/op of the store
// call alone (store-allocs/op); store-ns/op and floor-ns/op; and for a
// read, checked-x-floor, the time of the floor with the checks a store
// must make (readChecked) over the floor's, and x-checked, the store's
// over that checked floor's: the part of x-floor the store's own design
// costs. Index/... builds
// a store over many batch files and reports the index heap per key (B/key)
// and New's time per batch file (ns/file).
//
//	go test -run=NONE -bench=Floor ./pkg/hicachefile
func BenchmarkFloor(b *testing.B) {
	for _, d := range floorDirs(b) {
		for _, n := range floorNs {
			b.Run(fmt.Sprintf("%s/set/N=%d", d.name, n), func(b *testing.B) { benchFloor(b, d.dir, n, true, 0) })
			b.Run(fmt.Sprintf("%s/get/N=%d", d.name, n), func(b *testing.B) { benchFloor(b, d.dir, n, false, 0) })
		}
	}
	b.Run("Index", func(b *testing.B) { benchIndexHeap(b, 1000, 128) })
}

func benchFloor(b *testing.B, parent string, n int, write bool, others int) {
	dir, err := os.MkdirTemp(parent, "floor")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := seedCfg
	cfg.Pages = 2 * n
	p := newPool(b, cfg)
	src, _ := p.Alloc(n * cfg.PageSize)
	dst, _ := p.Alloc(n * cfg.PageSize)
	fillRandom(b, p, src)
	calls := newErrorFS().counting(opAll &^ opFstatfs)
	s := newStore(b, Config{Dir: filepath.Join(dir, "store"), ModelName: "bench", Syscalls: calls.syscalls()}, p)
	fdir := filepath.Join(dir, "floor")
	if err := os.Mkdir(fdir, 0o755); err != nil {
		b.Fatal(err)
	}
	idx := src
	if !write {
		idx = dst
	}
	pages, err := p.PageBuffers(idx)
	if err != nil {
		b.Fatal(err)
	}
	fl := &floor{dir: fdir, pages: pages, bpp: p.BuffersPerPage(), n: n, ident: s.ident}
	keysOf := func(round int) []string {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = sglangKey(round, i)
		}
		return keys
	}
	getKeys := keysOf(0)
	if others > 0 {
		// Other keys in the index first, in batches of n, so that its
		// table outgrows the CPU's caches as a serving store's does.
		w := newStore(b, Config{Dir: filepath.Join(dir, "store"), ModelName: "bench", NoWatch: true}, p)
		ks := make([]string, n)
		for f := 0; f*n < others; f++ {
			for i := range ks {
				ks[i] = sglangKey("other", f, i)
			}
			if ok, err := w.BatchSetV1(ks, src); err != nil || !all(ok) {
				b.Fatal(err)
			}
		}
		s = newStore(b, Config{Dir: filepath.Join(dir, "store"), ModelName: "bench", Syscalls: calls.syscalls()}, p)
	}
	if !write {
		keys := getKeys
		if _, err := s.BatchSetV1(keys, src); err != nil {
			b.Fatal(err)
		}
		fl.pages, _ = p.PageBuffers(src)
		// The checked floor reads a file of its own: one just read by the
		// other floor would come warmer from the CPU's caches.
		for _, name := range []string{"f", "fc"} {
			if err := fl.write(keys, name); err != nil {
				b.Fatal(err)
			}
		}
		for i := range n {
			fl.crcs = append(fl.crcs, crc32c.Page(fl.pages[i*fl.bpp:(i+1)*fl.bpp]))
		}
		fl.pages = pages
	}
	// The checked floor's preadv: the pages, then the rest of the file.
	var checkedIOV [][]byte
	var checkedTail []byte
	var tag uint32
	if !write {
		st, err := os.Stat(filepath.Join(fdir, "fc"))
		if err != nil {
			b.Fatal(err)
		}
		checkedTail = make([]byte, st.Size()-int64(n*p.PageBytes()))
		checkedIOV = append(pages[:len(pages):len(pages)], checkedTail)
		raw, err := os.ReadFile(filepath.Join(fdir, "fc"))
		if err != nil {
			b.Fatal(err)
		}
		tag = batchfile.Tag(raw)
	}

	var storeNs, floorNs, checkedNs, storeCPU, floorCPU time.Duration
	var syscalls, ops int64
	const clearBytes = 256 << 20 // a write run clears both directories after this many bytes
	written := int64(0)
	round := 0
	b.ReportAllocs()
	for b.Loop() {
		var keys []string
		if write {
			b.StopTimer()
			round++
			keys = keysOf(round)
			if written > clearBytes {
				if err := s.Clear(); err != nil {
					b.Fatal(err)
				}
				if err := os.RemoveAll(fdir); err != nil {
					b.Fatal(err)
				}
				_ = os.Mkdir(fdir, 0o755)
				written = 0
			}
			written += int64(n * p.PageBytes())
			b.StartTimer()
		}
		storeOp := func() {
			c0 := calls.count(opAll &^ opFstatfs)
			u0 := cpuTime()
			t0 := time.Now()
			var ok []bool
			var err error
			if write {
				ok, err = s.BatchSetV1(keys, src)
			} else {
				ok, err = s.BatchGetV1(getKeys, dst)
			}
			storeNs += time.Since(t0)
			storeCPU += cpuTime() - u0
			syscalls += calls.count(opAll&^opFstatfs) - c0
			if err != nil || !all(ok) {
				b.Fatal(ok, err)
			}
		}
		floorOp := func() {
			u0 := cpuTime()
			t0 := time.Now()
			var err error
			if write {
				err = fl.write(keys, fmt.Sprint("f", round))
			} else {
				err = fl.read("f")
			}
			floorNs += time.Since(t0)
			floorCPU += cpuTime() - u0
			if err != nil {
				b.Fatal(err)
			}
		}
		checkedOp := func() {
			t0 := time.Now()
			err := fl.readChecked("fc", getKeys, checkedIOV, checkedTail, tag)
			checkedNs += time.Since(t0)
			if err != nil {
				b.Fatal(err)
			}
		}
		// Each takes each place in turn, so that none always runs with
		// the caches another left.
		order := []func(){storeOp, floorOp}
		if !write {
			order = append(order, checkedOp)
		}
		for j := range order {
			order[(int(ops)+j)%len(order)]()
		}
		ops++
	}
	b.ReportMetric(float64(storeNs)/float64(floorNs), "x-floor")
	b.ReportMetric(float64(storeCPU)/float64(floorCPU), "x-floor-cpu")
	b.ReportMetric(float64(storeNs.Nanoseconds())/float64(ops), "store-ns/op")
	b.ReportMetric(float64(floorNs.Nanoseconds())/float64(ops), "floor-ns/op")
	b.ReportMetric(float64(syscalls)/float64(ops), "syscalls/op")
	if !write {
		// The checks a store must make, on top of the floor, and the
		// store against the floor with those checks.
		b.ReportMetric(float64(checkedNs)/float64(floorNs), "checked-x-floor")
		b.ReportMetric(float64(storeNs)/float64(checkedNs), "x-checked")
	}
	// Allocations of the store call alone, in steady state.
	b.StopTimer()
	const runs = 10
	sets := make([][]string, runs+1)
	for r := range sets {
		sets[r] = keysOf(-1 - r - runs*int(ops))
	}
	r := 0
	allocs := testing.AllocsPerRun(runs, func() {
		if write {
			_, _ = s.BatchSetV1(sets[r], src)
			r++
		} else {
			_, _ = s.BatchGetV1(getKeys, dst)
		}
	})
	b.ReportMetric(allocs, "store-allocs/op")
}

// BenchmarkBigIndex is BenchmarkFloor's read of N keys by a store
// that indexes a million other keys as well: its index no longer fits the
// CPU's caches, so each key looked up costs a cache miss, as in a serving
// store of millions of pages, where the small index of BenchmarkFloor
// stays in cache.
//
//	go test -run=NONE -bench=BigIndex -count=3 -benchtime=1s ./pkg/hicachefile
func BenchmarkBigIndex(b *testing.B) {
	for _, d := range floorDirs(b) {
		for _, n := range []int{100, 1000} {
			b.Run(fmt.Sprintf("%s/get/N=%d", d.name, n), func(b *testing.B) { benchFloor(b, d.dir, n, false, 1<<20) })
		}
	}
}

// benchIndexHeap writes files batch files of per seed pages each, then
// opens stores over them and reports the heap New's index keeps per key
// (B/key) and New's time per batch file (ns/file).
func benchIndexHeap(b *testing.B, files, per int) {
	dir := floorDirs(b)[0].dir
	cfg := seedCfg
	cfg.Pages = per
	p := newPool(b, cfg)
	src, _ := p.Alloc(per * cfg.PageSize)
	fillRandom(b, p, src)
	sc := Config{Dir: dir, ModelName: "bench", NoWatch: true}
	w := newStore(b, sc, p)
	for f := range files {
		keys := make([]string, per)
		for i := range keys {
			keys[i] = sglangKey(f, i)
		}
		if ok, err := w.BatchSetV1(keys, src); err != nil || !all(ok) {
			b.Fatal(err)
		}
	}
	var heap float64
	var took time.Duration
	for b.Loop() {
		s, t, h := newMeasured(b, sc)
		took, heap = took+t, heap+h
		if !s.Exists(sglangKey(files-1, per-1)) {
			b.Fatal("last key missing")
		}
		_ = s.Close()
	}
	b.ReportMetric(heap/float64(b.N)/float64(files*per), "B/key")
	b.ReportMetric(float64(took.Nanoseconds())/float64(b.N)/float64(files), "ns/file")
}

// BenchmarkParallelGet runs BatchGetV1 of 128 seed pages from as many
// goroutines as -cpu says, each reading its own batch file into its own
// slots, and reports pages/s: with the lookups of different keys on
// separate index shards and no scan lock on a hit, throughput should not
// fall as goroutines are added.
//
//	go test -run=NONE -bench=ParallelGet -cpu=1,2,4 ./pkg/hicachefile
func BenchmarkParallelGet(b *testing.B) {
	const batches, per = 8, 128
	cfg := seedCfg
	cfg.Pages = 2 * batches * per
	p := newPool(b, cfg)
	dir := floorDirs(b)[0].dir
	s := newStore(b, Config{Dir: dir, ModelName: "bench"}, p)
	keys := make([][]string, batches)
	dsts := make([][]int64, batches)
	for f := range batches {
		src, _ := p.Alloc(per * cfg.PageSize)
		dsts[f], _ = p.Alloc(per * cfg.PageSize)
		fillRandom(b, p, src)
		keys[f] = make([]string, per)
		for i := range per {
			keys[f][i] = sglangKey(f, i)
		}
		if ok, err := s.BatchSetV1(keys[f], src); err != nil || !all(ok) {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		f := int(next.Add(1)-1) % batches
		for pb.Next() {
			if ok, err := s.BatchGetV1(keys[f], dsts[f]); err != nil || !ok[0] {
				b.Error(ok[0], err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "pages/s")
}

// BenchmarkNew times New over a directory of many batch files (one seed page
// each, as many small BatchSetV1 calls leave) and reports ns/file. warm: on
// tmpfs. cold: on the default (disk) directory, each file's pages dropped
// from the page cache (posix_fadvise DONTNEED) before every New, so that New
// reads every index from the device; inodes and the directory stay cached.
// IOWorkers=1 loads the files one at a time; the other runs load them on
// IOWorkers goroutines. cpu-s/New is the process's CPU time (user and
// system) per New: on a machine others load, wall time also counts the
// waits for a core.
//
//	go test -run=NONE -bench=BenchmarkNew -benchtime=3x ./pkg/hicachefile
func BenchmarkNew(b *testing.B) {
	const files = 100000
	dirs := floorDirs(b)
	for _, d := range []struct {
		name, dir string
		cold      bool
	}{{"warm", dirs[0].dir, false}, {"cold", dirs[1].dir, true}} {
		cfg := seedCfg
		cfg.Pages = 1
		p := newPool(b, cfg)
		src, _ := p.Alloc(cfg.PageSize)
		sc := Config{Dir: d.dir, ModelName: "new", NoWatch: true}
		w := newStore(b, sc, p)
		for f := range files {
			if ok, err := w.BatchSetV1([]string{sglangKey("new", f)}, src); err != nil || !ok[0] {
				b.Fatal(err)
			}
		}
		for _, workers := range []int{1, 2, 8} {
			b.Run(fmt.Sprintf("%s/IOWorkers=%d", d.name, workers), func(b *testing.B) {
				c := sc
				c.IOWorkers = workers
				var took, cpu time.Duration
				for b.Loop() {
					if d.cold {
						b.StopTimer()
						dropCache(b, w.v1Dir)
						b.StartTimer()
					}
					u0 := cpuTime()
					t0 := time.Now()
					s, err := New(c)
					if err != nil {
						b.Fatal(err)
					}
					took += time.Since(t0)
					cpu += cpuTime() - u0
					b.StopTimer()
					if !s.Exists(sglangKey("new", files-1)) {
						b.Fatal("last key missing")
					}
					_ = s.Close()
					b.StartTimer()
				}
				b.ReportMetric(float64(took.Nanoseconds())/float64(b.N)/files, "ns/file")
				b.ReportMetric(took.Seconds()/float64(b.N), "s/New")
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/New")
			})
		}
	}
}

// crcSink keeps the floor's checksums from being optimised away.
var crcSink atomic.Uint32

// dropCache drops the page-cache pages of every file in dir, writing
// dirty ones back first (DONTNEED leaves dirty pages cached).
func dropCache(b *testing.B, dir string) {
	names, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range names {
		fd, err := unix.Open(filepath.Join(dir, n.Name()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		_ = unix.Fdatasync(fd)
		_ = unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
		_ = unix.Close(fd)
	}
}

// BenchmarkLarge reads 16 pages of 8 MiB (Llama-3-8B, page_first) with
// BatchGetV1, CRC32C verification on, against the same bytes read into the
// same buffers by plain preadv with no checksum, alternating the two in one
// loop, and reports x-preadv: the plain read's time over the store's, so
// that 1 means as fast as preadv; and x-crcfloor, the same for the floor
// of the issue, a preadv followed by the CRC32C of every page read. The
// floors for IOWorkers=2 split the pages between two goroutines as the
// store does, each checksumming its own half for x-crcfloor. direct compares a
// DirectIO store with O_DIRECT preads of the same ranges (on the default
// directory: tmpfs has no O_DIRECT).
//
//	go test -run=NONE -bench=Large ./pkg/hicachefile
func BenchmarkLarge(b *testing.B) {
	const n = 16
	cfg := hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
		PageSize: 64, Pages: n, LayerNum: 32, HeadNum: 8, HeadDim: 128}
	p := newPool(b, cfg)
	idx, _ := p.Alloc(n * cfg.PageSize)
	fillRandom(b, p, idx)
	dirs := floorDirs(b)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = sglangKey("large", i)
	}
	for _, c := range []struct {
		name    string
		dir     string
		workers int
		direct  bool
	}{{"IOWorkers=1", dirs[0].dir, 1, false}, {"IOWorkers=2", dirs[0].dir, 2, false}, {"direct", dirs[1].dir, 2, true}} {
		b.Run(c.name, func(b *testing.B) {
			dir, _ := os.MkdirTemp(c.dir, "large")
			defer os.RemoveAll(dir)
			s := newStore(b, Config{Dir: dir, ModelName: "bench", IOWorkers: c.workers, DirectIO: c.direct, MaxBatchFileBytes: 1 << 30}, p)
			if ok, err := s.BatchSetV1(keys, idx); err != nil || !all(ok) {
				b.Fatal(ok, err)
			}
			loc, _ := s.Locate(keys[0])
			bufs, _ := p.PageBuffers(idx)
			flags := unix.O_RDONLY | unix.O_CLOEXEC
			if c.direct {
				flags |= unix.O_DIRECT
			}
			// plain reads the pages with preadv, split between the
			// workers; with sum, each worker then checksums its half, as
			// the floor of the issue (preadv, CRC32C per page) does.
			plain := func(sum bool) error {
				fd, err := unix.Open(loc.Path, flags, 0)
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				per := (len(bufs) + c.workers - 1) / c.workers
				errs := make([]error, c.workers)
				parallel(c.workers, c.workers, func(w int) {
					lo := min(len(bufs), w*per)
					hi := min(len(bufs), lo+per)
					off := int64(0)
					for _, x := range bufs[:lo] {
						off += int64(len(x))
					}
					errs[w] = vectored(preadvRaw, fd, bufs[lo:hi], off)
					if sum {
						for _, x := range bufs[lo:hi] {
							crcSink.Add(crc32.Checksum(x, castagnoli))
						}
					}
				})
				return errors.Join(errs...)
			}
			var storeNs, plainNs, floorNs time.Duration
			i := 0
			for b.Loop() {
				op := func() {
					t0 := time.Now()
					ok, err := s.BatchGetV1(keys, idx)
					storeNs += time.Since(t0)
					if err != nil || !all(ok) {
						b.Fatal(ok, err, s.Stats())
					}
				}
				fl := func() {
					t0 := time.Now()
					if err := plain(false); err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					if err := plain(true); err != nil {
						b.Fatal(err)
					}
					plainNs += t1.Sub(t0)
					floorNs += time.Since(t1)
				}
				if i%2 == 0 {
					op()
					fl()
				} else {
					fl()
					op()
				}
				i++
			}
			b.ReportMetric(float64(plainNs)/float64(storeNs), "x-preadv")
			b.ReportMetric(float64(floorNs)/float64(storeNs), "x-crcfloor")
			b.ReportMetric(float64(n*p.PageBytes())/storeNs.Seconds()*float64(i)/1e9, "store-GB/s")
			b.ReportMetric(float64(n*p.PageBytes())/plainNs.Seconds()*float64(i)/1e9, "preadv-GB/s")
			if c.direct && s.Stats().DirectBytes == 0 {
				b.Log("no byte went direct here")
			}
		})
	}
}
