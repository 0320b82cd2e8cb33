//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestReadsAcrossManyFilesGetPagesWritten: calls whose keys span more than maxOpenFiles batch
// files, in random order with repeats, mixed with old-format keys and
// missing keys, get exactly the pages written, whatever the IO workers and
// DirectIO.
func TestReadsAcrossManyFilesGetPagesWritten(t *testing.T) {
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
					testReadsAcrossManyFiles(t, pc, nv1, nold, perFile, maxQ, workers, direct)
				})
			}
		}
	}
}

func testReadsAcrossManyFiles(t *testing.T, pc hostcache.Config, nv1, nold, perFile, maxQ, workers int, direct bool) {
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

// TestReadWithoutFstatSettlesLikeFstat: BatchGetV1 reads a batch file without an
// fstat, trusting the size its index recorded; what happens to the keys of
// a file that changed under its name must not depend on that. For each
// change (grown, truncated at several points, a FIFO, a directory, devices
// put in its place, unseen by a store that does not watch), the read
// without an fstat (DirectIO off) and the read after one (DirectIO on,
// which keeps it) answer the same keys and count the same Stats, and the
// file's keys are misses.
func TestReadWithoutFstatSettlesLikeFstat(t *testing.T) {
	type change func(t *testing.T, path string, indexOff, size int64)
	truncate := func(to func(indexOff, size int64) int64) change {
		return func(t *testing.T, path string, indexOff, size int64) {
			if err := os.Truncate(path, to(indexOff, size)); err != nil {
				t.Fatal(err)
			}
		}
	}
	replace := func(kind string) change {
		return func(t *testing.T, path string, _, _ int64) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			plant(t, kind, path, 0)
		}
	}
	device := func(minor int) change {
		return func(t *testing.T, path string, _, _ int64) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			mkdev(t, path, minor)
		}
	}
	cases := []struct {
		name   string
		change change
	}{
		{"grown by a byte", func(t *testing.T, path string, _, _ int64) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err == nil {
				_, err = f.Write([]byte{0})
				err = errors.Join(err, f.Close())
			}
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated in its pages", truncate(func(off, _ int64) int64 { return off / 2 })},
		{"truncated in its entries", truncate(func(off, _ int64) int64 { return off + 10 })},
		{"truncated by its last byte", truncate(func(_, size int64) int64 { return size - 1 })},
		{"emptied", truncate(func(_, _ int64) int64 { return 0 })},
		{"fifo", replace("fifo")},
		{"directory", replace("dir")},
		{"/dev/null", device(3)},
		{"/dev/zero", device(5)},
	}
	// Whole: the batch read as written (the entries come with the pages).
	// Gaps: every other key, so the entries take a read of their own.
	// Large: batches big enough to be read by two IO workers.
	for _, pick := range []struct {
		name string
		n    int
		gaps bool
	}{{"whole", 4, false}, {"gaps", 4, true}, {"large", 3000, false}, {"large gaps", 6000, true}} {
		for _, c := range cases {
			t.Run(pick.name+"/"+c.name, func(t *testing.T) {
				var got [2]string
				for m, direct := range []bool{false, true} {
					got[m] = changedFileScenario(t, direct, pick.n, pick.gaps, c.change)
				}
				if got[0] != got[1] {
					t.Errorf("without fstat: %s\nwith fstat:    %s", got[0], got[1])
				}
			})
		}
	}
}

// changedFileScenario writes a batch of n pages with one store, changes its
// file with change, reads it back (every key, or every other one with
// gaps) with another store (DirectIO as direct, two IO workers) that
// indexed it before the change and does not watch, and returns what the
// read answered and counted. A change that cannot be made here skips the
// test.
func changedFileScenario(t *testing.T, direct bool, n int, gaps bool, change func(t *testing.T, path string, indexOff, size int64)) string {
	ps := mhaCfg.PageSize
	pc := mhaCfg
	pc.Pages = 2 * n
	p := newPool(t, pc)
	idx, err := p.Alloc(2 * n * ps)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, p, idx[:n*ps])
	dir := t.TempDir()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	if ok, err := w.BatchSetV1(keys, idx[:n*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true, DirectIO: direct, IOWorkers: 2}, p)
	loc, ok := s.Locate("k0")
	if !ok {
		t.Fatal("k0 not indexed")
	}
	st, err := os.Stat(loc.Path)
	if err != nil {
		t.Fatal(err)
	}
	change(t, loc.Path, int64(n)*loc.Length, st.Size())
	get := keys
	if gaps {
		get = nil
		for i := 0; i < n; i += 2 {
			get = append(get, keys[i])
		}
	}
	dst := idx[n*ps : (n+len(get))*ps]
	before := s.Stats()
	var res []bool
	within(t, "BatchGetV1", func() { res, err = s.BatchGetV1(get, dst) })
	if err != nil {
		t.Fatalf("direct=%v: BatchGetV1 = %v", direct, err)
	}
	served := 0
	for i, b := range res {
		if b {
			served++
			t.Errorf("direct=%v: key %s of a changed file served", direct, get[i])
		}
	}
	a := s.Stats()
	return fmt.Sprintf("served %d of %d corrupt +%d mismatch +%d special +%d errors +%d skipped +%d misses +%d",
		served, len(res), a.Corrupt-before.Corrupt, a.Mismatch-before.Mismatch, a.SpecialFiles-before.SpecialFiles,
		a.Errors-before.Errors, a.SkippedFiles-before.SkippedFiles, a.Misses-before.Misses)
}

// TestReadOfIndexedSizeMakesFewestSyscalls: a batch file of the indexed size is read with no
// system call more than its bytes need: read whole, an open, one preadv
// (pages, entries and the probe byte together) and a close; with a gap,
// one preadv per run of pages and one for the entries.
func TestReadOfIndexedSizeMakesFewestSyscalls(t *testing.T) {
	const n = 4
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 2*n)
	dir := t.TempDir()
	keys := []string{"a", "b", "c", "d"}
	w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	if ok, err := w.BatchSetV1(keys, idx[:n*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	c := newErrorFS().counting(opAll &^ opFstatfs)
	s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true, Syscalls: c.syscalls()}, p)
	for _, tc := range []struct {
		keys           []string
		dst            []int64
		preadvs, calls int64
	}{
		{keys, idx[n*ps:], 1, 3},
		{[]string{"a", "c"}, append(append([]int64(nil), idx[n*ps:(n+1)*ps]...), idx[(n+2)*ps:(n+3)*ps]...), 3, 5},
	} {
		p0, c0 := c.count(opPreadv), c.count(opAll&^opFstatfs)
		ok, err := s.BatchGetV1(tc.keys, tc.dst)
		if err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
		for i := range tc.keys {
			if !samePages(t, p, idx[int(tc.keys[i][0]-'a')*ps], tc.dst[i*ps]) {
				t.Errorf("%v: key %s read wrong bytes", tc.keys, tc.keys[i])
			}
		}
		if got := c.count(opPreadv) - p0; got != tc.preadvs {
			t.Errorf("%v: %d preadv calls, want %d", tc.keys, got, tc.preadvs)
		}
		if got := c.count(opAll&^opFstatfs) - c0; got != tc.calls {
			t.Errorf("%v: %d system calls through the seam, want %d", tc.keys, got, tc.calls)
		}
	}
}

// TestReadProbe: readProbe succeeds on a file that ends right before the
// probe byte, whether the iovecs fit one call or not; fails with errGrown
// on a longer file and io.ErrUnexpectedEOF on a shorter one.
func TestReadProbe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	for _, tc := range []struct {
		size, want int // file bytes, bytes asked for past offset 8 (the probe with them)
		bufs       int // buffers the bytes come in
		err        error
	}{
		{100, 93, 1, nil},
		{100, 93, 3, nil},
		{3000, 2993, 2993, nil}, // over the iovec limit, ending at the probe
		{3000, 2993, 1500, nil},
		{101, 93, 1, errGrown},
		{3001, 2993, 2993, errGrown},
		{99, 93, 1, io.ErrUnexpectedEOF},
		{2999, 2993, 2993, io.ErrUnexpectedEOF},
		{8, 93, 2, io.ErrUnexpectedEOF},
	} {
		t.Run(fmt.Sprintf("%d/%d/%d", tc.size, tc.want, tc.bufs), func(t *testing.T) {
			data := make([]byte, tc.size)
			for i := range data {
				data[i] = byte(i * 7)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			buf := make([]byte, tc.want)
			var bufs [][]byte
			per := (tc.want + tc.bufs - 1) / tc.bufs
			for b := buf; len(b) > 0; b = b[min(per, len(b)):] {
				bufs = append(bufs, b[:min(per, len(b))])
			}
			err = readProbe(preadvRaw, fd, bufs, 8)
			if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
				t.Fatalf("readProbe = %v, want %v", err, tc.err)
			}
			if err == nil {
				for i, b := range buf[:tc.want-1] {
					if b != data[8+i] {
						t.Fatalf("byte %d = %d, want %d", i, b, data[8+i])
					}
				}
			}
		})
	}
}

// TestOtherPoolsCopyNotOpened: a key whose only copy another pool shape
// wrote is a miss counted once in Stats.Mismatch, decided from the index
// for its whole file, with no open of that file; a key of the same call
// that this pool wrote is served.
func TestOtherPoolsCopyNotOpened(t *testing.T) {
	ps := mhaCfg.PageSize
	dir := t.TempDir()
	other := mhaCfg
	other.LayerNum++
	po := newPool(t, other)
	oidx, _ := po.Alloc(ps)
	fillRandom(t, po, oidx)
	if ok, err := newStore(t, Config{Dir: dir, ModelName: "m"}, po).BatchSetV1([]string{"theirs"}, oidx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	p, idx := randomPages(t, 3)
	if ok, err := newStore(t, Config{Dir: dir, ModelName: "m"}, p).BatchSetV1([]string{"mine"}, idx[:ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	fs := newErrorFS().counting(opOpenat)
	sys := fs.syscalls()
	s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true, Syscalls: sys}, p)
	before := s.Stats()
	opens0 := fs.count(opOpenat)
	ok, err := s.BatchGetV1([]string{"mine", "theirs"}, idx[ps:])
	if err != nil || !ok[0] || ok[1] {
		t.Fatalf("BatchGetV1 = %v, %v; want [true false]", ok, err)
	}
	if !samePages(t, p, idx[0], idx[ps]) {
		t.Error("mine read wrong bytes")
	}
	if got := s.Stats().Mismatch - before.Mismatch; got != 1 {
		t.Errorf("Stats.Mismatch +%d, want +1", got)
	}
	// The refresh after the mismatch may list the directory; it opens no
	// batch file it knows. Only "mine"'s file is opened for reading.
	if got := fs.count(opOpenat) - opens0; got != 1 {
		t.Errorf("%d opens, want 1 (the file of mine)", got)
	}
}
