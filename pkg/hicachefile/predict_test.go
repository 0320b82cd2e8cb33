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

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestPredictedRun: BatchGetV1 guesses the copies of the keys between a
// call's first and last when those two lie n-1 pages apart in one batch
// file (predictRun). Every guess is checked against the file's own index,
// so a call whose keys between lie elsewhere (another file), or nowhere,
// is served exactly as with a lookup per key, and counts nothing it
// should not.
func TestPredictedRun(t *testing.T) {
	const n = 5
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 3*n)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = sglangKey("run", i)
	}
	if ok, err := s.BatchSetV1(keys, idx[:n*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	// Other keys, of the same length, in a file of their own.
	other := make([]string, n)
	for i := range other {
		other[i] = sglangKey("other", i)
	}
	if ok, err := s.BatchSetV1(other, idx[n*ps:2*n*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	dst := idx[2*n*ps:]
	check := func(name string, ask []string, want []bool, src []int) {
		t.Helper()
		before := s.Stats()
		ok, err := s.BatchGetV1(ask, dst)
		if err != nil || !slices.Equal(ok, want) {
			t.Fatalf("%s: BatchGetV1 = %v, %v; want %v", name, ok, err, want)
		}
		for i, w := range want {
			if w && !samePages(t, p, dst[i*ps], idx[src[i]*ps]) {
				t.Errorf("%s: key %d served the wrong page", name, i)
			}
		}
		after := s.Stats()
		if after.Corrupt != before.Corrupt || after.Mismatch != before.Mismatch || after.Errors != before.Errors {
			t.Errorf("%s: counted corrupt %d, mismatch %d, errors %d; want none",
				name, after.Corrupt-before.Corrupt, after.Mismatch-before.Mismatch, after.Errors-before.Errors)
		}
	}
	all5 := []bool{true, true, true, true, true}
	check("as written", keys, all5, []int{0, 1, 2, 3, 4})
	// The keys between from the other file: first and last still n-1 apart.
	mixed := slices.Clone(keys)
	mixed[1], mixed[3] = other[1], other[4]
	check("two keys from another file", mixed, all5, []int{0, n + 1, 2, n + 4, 4})
	// A key between that no file holds.
	absent := slices.Clone(keys)
	absent[3] = sglangKey("nowhere")
	check("a key nowhere", absent, []bool{true, true, true, false, true}, []int{0, 1, 2, 3, 4})
	// The same keys, other order: first and last not n-1 apart.
	rev := slices.Clone(keys)
	slices.Reverse(rev)
	check("reversed", rev, all5, []int{4, 3, 2, 1, 0})
}

// TestPredictedRunCorrupt: a page whose copy a guess reaches is counted
// corrupt once, as with a lookup, and not again once its copy is dropped;
// the other pages of the file are served.
func TestPredictedRunCorrupt(t *testing.T) {
	const n = 6
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 2*n)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = sglangKey("corrupt", i)
	}
	if ok, err := s.BatchSetV1(keys, idx[:n*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	loc, _ := s.Locate(keys[2])
	f, err := os.OpenFile(loc.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xde, 0xad}, loc.Offset+7); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	want := []bool{true, true, false, true, true, true}
	for round := range 3 {
		ok, err := s.BatchGetV1(keys, idx[n*ps:])
		if err != nil || !slices.Equal(ok, want) {
			t.Fatalf("round %d: BatchGetV1 = %v, %v; want %v", round, ok, err, want)
		}
		if c := s.Stats().Corrupt; c != 1 {
			t.Errorf("round %d: Stats.Corrupt = %d, want 1", round, c)
		}
	}
}

// TestGuessedReadLikeLookedUp is a differential test of the guessed
// read (predictRun): two stores on two directories hold the same batch
// file, damaged the same way; one is read with the keys in the order
// written, which the guess takes, the other with them reversed, which
// looks every key up. Both must serve the same keys, the right bytes, and
// count the same, in a first read and in a second (which finds the copies
// the first dropped gone), of all the keys, all but the last, all but the
// first, the middle ones, and the first minPredict. Before each read, a
// call of other keys leaves their digests in the scratch the read reuses.
// Pools of four shapes:
// buffers of 128 bytes (crc32cPages), of 18 bytes (hash/crc32), MLA, and
// 4096-byte buffers read with DirectIO.
func TestGuessedReadLikeLookedUp(t *testing.T) {
	const n = guessedBatchKeys
	damages := []struct {
		name string
		do   func(t *testing.T, path, other string, loc []Location)
	}{
		{"EIO on page 3", func(*testing.T, string, string, []Location) {}},
		{"EIO on the entries", func(*testing.T, string, string, []Location) {}},
		{"none", func(*testing.T, string, string, []Location) {}},
		{"first page", func(t *testing.T, path, _ string, loc []Location) { flipAt(t, path, loc[0].Offset+1) }},
		{"middle page", func(t *testing.T, path, _ string, loc []Location) { flipAt(t, path, loc[3].Offset+5) }},
		{"last page", func(t *testing.T, path, _ string, loc []Location) { flipAt(t, path, loc[n-1].Offset) }},
		{"two pages", func(t *testing.T, path, _ string, loc []Location) {
			flipAt(t, path, loc[1].Offset)
			flipAt(t, path, loc[5].Offset+loc[5].Length-1)
		}},
		{"middle entry's key", func(t *testing.T, path, _ string, loc []Location) {
			flipAt(t, path, loc[n-1].Offset+loc[n-1].Length+int64(3*(entryFixed+64)+4))
		}},
		{"last entry's CRC", func(t *testing.T, path, _ string, loc []Location) {
			flipAt(t, path, loc[n-1].Offset+loc[n-1].Length+int64((n-1)*(entryFixed+64)+2+64+16))
		}},
		{"trailer", func(t *testing.T, path, _ string, _ []Location) {
			st, _ := os.Stat(path)
			flipAt(t, path, st.Size()-2)
		}},
		{"truncated in page 4", func(t *testing.T, path, _ string, loc []Location) { truncateTo(t, path, loc[4].Offset+3) }},
		{"truncated in the entries", func(t *testing.T, path, _ string, loc []Location) {
			truncateTo(t, path, loc[n-1].Offset+loc[n-1].Length+int64(2*(entryFixed+64)))
		}},
		{"truncated by a byte", func(t *testing.T, path, _ string, _ []Location) {
			st, _ := os.Stat(path)
			truncateTo(t, path, st.Size()-1)
		}},
		{"grown by a byte", func(t *testing.T, path, _ string, _ []Location) {
			st, _ := os.Stat(path)
			truncateTo(t, path, st.Size()+1)
		}},
		{"removed", func(t *testing.T, path, _ string, _ []Location) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"a directory in its place", func(t *testing.T, path, _ string, _ []Location) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"a FIFO in its place", func(t *testing.T, path, _ string, _ []Location) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"another batch renamed over it", func(t *testing.T, path, other string, _ []Location) {
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"another batch copied over it in place", func(t *testing.T, path, other string, _ []Location) {
			b, err := os.ReadFile(other)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	// The damages that are no change to the file but a read that fails
	// with EIO wherever it reaches pages [from, to) (n: the entries).
	eio := map[string][2]int{"EIO on page 3": {3, 4}, "EIO on the entries": {n, n + 1}}
	odd := hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.LayerFirst, DType: hostcache.Float16,
		PageSize: 3, Pages: 4 * n, LayerNum: 5, HeadNum: 1, HeadDim: 3}
	mla := hostcache.Config{Kind: hostcache.MLA, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
		PageSize: 2, Pages: 4 * n, LayerNum: 3, KVLoraRank: 8, QKRopeHeadDim: 4}
	mha := mhaCfg
	mha.Pages = 4 * n
	// Buffers of 4096 bytes, read with O_DIRECT where the file system
	// takes it.
	big := hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.LayerFirst, DType: hostcache.Float16,
		PageSize: 64, Pages: 4 * n, LayerNum: 2, HeadNum: 2, HeadDim: 16}
	for _, pc := range []struct {
		name   string
		cfg    hostcache.Config
		direct bool
	}{{"mha", mha, false}, {"odd", odd, false}, {"mla", mla, false}, {"direct", big, true}} {
		// All the file's keys (the entries come in the pages' preadv), all
		// but the last (they come in a pread of their own), all but the
		// first, the middle ones, and the fewest keys that are guessed.
		for _, sp := range [][2]int{{0, n}, {0, n - 1}, {1, n}, {1, n - 1}, {0, minPredict}} {
			for _, d := range damages {
				t.Run(fmt.Sprintf("%s/%s/keys %d-%d", pc.name, d.name, sp[0], sp[1]), func(t *testing.T) {
					testPredictedLikeLookedUp(t, pc.cfg, pc.direct, sp[0], sp[1], d.do, eio[d.name])
				})
			}
		}
	}
}

// testPredictedLikeLookedUp is TestGuessedReadLikeLookedUp for a pool
// of cfg, the keys lo to hi of a batch of guessedBatchKeys, and one damage; eio, when
// not zero, is the pages [from, to) whose reads fail with EIO.
func testPredictedLikeLookedUp(t *testing.T, cfg hostcache.Config, direct bool, lo, hi int, damage func(t *testing.T, path, other string, loc []Location), eio [2]int) {
	const n = guessedBatchKeys
	p := newPool(t, cfg)
	ps := cfg.PageSize
	src, err := p.Alloc(2 * n * ps)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, p, src)
	keys, other := make([]string, n), make([]string, n)
	for i := range keys {
		keys[i], other[i] = sglangKey("guessed", i), sglangKey("guessed other", i)
	}
	type side struct {
		s   *Store
		dst []int64
	}
	var sides [2]side
	for k := range sides {
		scfg := Config{Dir: t.TempDir(), ModelName: "m", NoWatch: true, PollInterval: time.Hour, IsMLA: cfg.Kind == hostcache.MLA, DirectIO: direct}
		var armed atomic.Bool
		if eio[1] > 0 {
			from, to := int64(eio[0]*p.PageBytes()), int64(eio[1]*p.PageBytes())
			scfg.Syscalls.Preadv = func(fd int, bufs [][]byte, off int64) (int, error) {
				end := off
				for _, b := range bufs {
					end += int64(len(b))
				}
				if armed.Load() && off < to && end > from {
					return 0, unix.EIO
				}
				return preadvRaw(fd, bufs, off)
			}
		}
		s := newStore(t, scfg, p)
		for _, b := range []struct {
			keys []string
			at   []int64
		}{{keys, src[:n*ps]}, {other, src[n*ps:]}} {
			if ok, err := s.BatchSetV1(b.keys, b.at); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
		}
		dst, err := p.Alloc(n * ps)
		if err != nil {
			t.Fatal(err)
		}
		sides[k] = side{s, dst}
		locs := make([]Location, n)
		for i, key := range keys {
			var ok bool
			if locs[i], ok = s.Locate(key); !ok {
				t.Fatalf("Locate(%d) found nothing", i)
			}
		}
		o, _ := s.Locate(other[0])
		damage(t, locs[0].Path, o.Path, locs)
		armed.Store(true)
	}
	for round := range 2 {
		m := hi - lo
		var oks [2][]bool
		var deltas [2]Stats
		for k, sd := range sides {
			ask, at := slices.Clone(keys[lo:hi]), slices.Clone(sd.dst[:m*ps])
			if k == 1 {
				// Reversed, page by page: every key looked up.
				slices.Reverse(ask)
				for i := range m {
					copy(at[i*ps:(i+1)*ps], sd.dst[(m-1-i)*ps:(m-i)*ps])
				}
			}
			// Other keys' digests into the scratch pool.
			if _, err := sd.s.BatchGetV1(other[:3], sd.dst[:3*ps]); err != nil {
				t.Fatal(err)
			}
			before := sd.s.Stats()
			ok, err := sd.s.BatchGetV1(ask, at)
			if err != nil {
				t.Fatalf("round %d, side %d: %v", round, k, err)
			}
			deltas[k] = statsDelta(before, sd.s.Stats())
			if k == 1 {
				slices.Reverse(ok)
			}
			oks[k] = ok
			for i, good := range ok {
				if good && !samePages(t, p, sd.dst[i*ps], src[(lo+i)*ps]) {
					t.Errorf("round %d, side %d: key %d served with the wrong bytes", round, k, i)
				}
			}
		}
		if !slices.Equal(oks[0], oks[1]) {
			t.Errorf("round %d: guessed read served %v, looked-up read %v", round, oks[0], oks[1])
		}
		if eio[1] > 0 && deltas[0].Errors == 0 {
			t.Errorf("round %d: no EIO counted", round)
		}
		if deltas[0] != deltas[1] {
			t.Errorf("round %d: guessed read counted %+v,\nlooked-up read %+v", round, deltas[0], deltas[1])
		}
	}
}

// guessedBatchKeys is the size of the batch TestGuessedReadLikeLookedUp damages.
const guessedBatchKeys = 7

// TestLargeGuessedReadServesEveryPage: a batch of 4200 seed pages (2.1 MB: three
// windows of reads, and pieces for two IO workers) read back as written,
// guessed, and in reverse, looked up, serves every page with its bytes.
func TestLargeGuessedReadServesEveryPage(t *testing.T) {
	const n = 4200
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprint("workers=", workers), func(t *testing.T) {
			cfg := seedCfg
			cfg.Pages = 2 * n
			ps := cfg.PageSize
			p := newPool(t, cfg)
			src, err := p.Alloc(n * ps)
			if err != nil {
				t.Fatal(err)
			}
			dst, err := p.Alloc(n * ps)
			if err != nil {
				t.Fatal(err)
			}
			fillRandom(t, p, src)
			s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", IOWorkers: workers}, p)
			keys := make([]string, n)
			for i := range keys {
				keys[i] = sglangKey("large", i)
			}
			if ok, err := s.BatchSetV1(keys, src); err != nil || !all(ok) {
				t.Fatal(err)
			}
			for _, reversed := range []bool{false, true} {
				ask, at := slices.Clone(keys), slices.Clone(dst)
				if reversed {
					slices.Reverse(ask)
					for i := range n {
						copy(at[i*ps:(i+1)*ps], dst[(n-1-i)*ps:(n-i)*ps])
					}
				}
				zeroPages(t, p, dst)
				ok, err := s.BatchGetV1(ask, at)
				if err != nil || !all(ok) {
					t.Fatalf("reversed=%v: BatchGetV1: %d of %d, %v", reversed, countTrue(ok), n, err)
				}
				for i := range n {
					if !samePages(t, p, dst[i*ps], src[i*ps]) {
						t.Fatalf("reversed=%v: page %d served with the wrong bytes", reversed, i)
					}
				}
			}
			if st := s.Stats(); st.Corrupt != 0 || st.Errors != 0 || st.Hits != 2*n {
				t.Errorf("Stats: corrupt %d, errors %d, hits %d; want 0, 0, %d", st.Corrupt, st.Errors, st.Hits, 2*n)
			}
		})
	}
}

// TestGuessedReadsUnderConcurrentDamage: stores A and B share a directory; while
// two goroutines read A's batches back as written (guessed), some with a
// key between swapped for another batch's, B rewrites batches and clears
// the directory, A rewrites them and clears it too, and a third goroutine flips bytes in,
// truncates and grows batch files. Every page served must hold its key's
// bytes (a key's bytes never change), no call may fail, and closing the
// stores leaves no descriptor open.
func TestGuessedReadsUnderConcurrentDamage(t *testing.T) {
	const batches, per, readers, iters = 4, 6, 2, 400
	cfg := mhaCfg
	cfg.Pages = batches*per + readers*per
	ps := cfg.PageSize
	p := newPool(t, cfg)
	fdsBefore := openFDs(t)
	src, err := p.Alloc(batches * per * ps)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, p, src)
	want := make([][]byte, batches*per)
	for i := range want {
		if want[i], err = p.GetDataPage(src[i*ps]); err != nil {
			t.Fatal(err)
		}
	}
	keys := make([]string, batches*per)
	for i := range keys {
		keys[i] = sglangKey("fire", i)
	}
	dir := t.TempDir()
	open := func() *Store {
		s, err := New(Config{Dir: dir, ModelName: "m"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RegisterMemPoolHost(p); err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := open(), open()
	write := func(s *Store, bt int) error {
		_, err := s.BatchSetV1(keys[bt*per:(bt+1)*per], src[bt*per*ps:(bt+1)*per*ps])
		return err
	}
	for bt := range batches {
		if err := write(a, bt); err != nil {
			t.Fatal(err)
		}
	}
	var rwg, mwg sync.WaitGroup // readers, mutators
	var stop atomic.Bool
	errs := make(chan error, 16)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	dsts := make([][]int64, readers)
	for r := range readers {
		if dsts[r], err = p.Alloc(per * ps); err != nil {
			t.Fatal(err)
		}
	}
	served := atomic.Int64{}
	for r := range readers {
		rwg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			for it := range iters {
				bt := rng.IntN(batches)
				ask := make([]int, per)
				for i := range ask {
					ask[i] = bt*per + i
				}
				if it%3 == 0 {
					ask[1+rng.IntN(per-2)] = (bt+1)%batches*per + rng.IntN(per)
				}
				names := make([]string, per)
				for i, k := range ask {
					names[i] = keys[k]
				}
				ok, err := a.BatchGetV1(names, dsts[r])
				if err != nil {
					fail(fmt.Errorf("reader %d: BatchGetV1: %w", r, err))
					return
				}
				for i, good := range ok {
					if !good {
						continue
					}
					served.Add(1)
					got, err := p.GetDataPage(dsts[r][i*ps])
					if err != nil || !bytes.Equal(got, want[ask[i]]) {
						fail(fmt.Errorf("reader %d, iteration %d: key %d served with the wrong bytes (%v)", r, it, ask[i], err))
						return
					}
				}
			}
		})
	}
	mwg.Go(func() {
		rng := rand.New(rand.NewPCG(3, 7))
		for !stop.Load() {
			var err error
			switch rng.IntN(7) {
			case 0:
				err = b.Clear()
			case 6:
				err = a.Clear()
			case 1, 2:
				err = write(b, rng.IntN(batches))
			default:
				err = write(a, rng.IntN(batches))
			}
			if err != nil {
				fail(fmt.Errorf("writer: %w", err))
				return
			}
		}
	})
	mwg.Go(func() {
		rng := rand.New(rand.NewPCG(4, 7))
		for !stop.Load() {
			files, _ := filepath.Glob(filepath.Join(a.v1Dir, "*.batch.bin"))
			if len(files) == 0 {
				continue
			}
			f := files[rng.IntN(len(files))]
			st, err := os.Stat(f)
			if err != nil || st.Size() < 2 {
				continue
			}
			switch rng.IntN(3) {
			case 0:
				if h, err := os.OpenFile(f, os.O_RDWR, 0); err == nil {
					_, _ = h.WriteAt([]byte{byte(rng.Uint32())}, rng.Int64N(st.Size()))
					_ = h.Close()
				}
			case 1:
				_ = os.Truncate(f, rng.Int64N(st.Size()))
			default:
				_ = os.Truncate(f, st.Size()+1)
			}
			time.Sleep(time.Millisecond)
		}
	})
	rwg.Wait()
	stop.Store(true)
	mwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := errors.Join(a.Close(), b.Close()); err != nil {
		t.Error(err)
	}
	if after := openFDs(t); after > fdsBefore {
		t.Errorf("%d descriptors open after the stores closed, %d before", after, fdsBefore)
	}
	t.Logf("%d pages served", served.Load())
	if served.Load() == 0 {
		t.Error("no page was served: the damage left nothing to check")
	}
}

// TestGuessedKeysOfOtherLengthsReadOwnCopy: keys between the first and the last
// whose lengths differ from those of the file's keys at their places, but
// add up to the same, and a key asked twice, are each read from their own
// copy, not from the place the guess gave them.
func TestGuessedKeysOfOtherLengthsReadOwnCopy(t *testing.T) {
	ps := mhaCfg.PageSize
	cfg := mhaCfg
	cfg.Pages = 24
	p := newPool(t, cfg)
	src, err := p.Alloc(12 * ps)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, p, src)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	// The file's keys are of 64, 10, 20 and 64 bytes; the other file's
	// of 20 and 10.
	file := []string{sglangKey("len", 0), strings.Repeat("a", 10), strings.Repeat("b", 20), sglangKey("len", 3)}
	other := []string{strings.Repeat("c", 20), strings.Repeat("d", 10), "x", "y"}
	for k, b := range [][]string{file, other} {
		if ok, err := s.BatchSetV1(b, src[k*4*ps:(k+1)*4*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
	}
	dst := src[8*ps:]
	for _, c := range []struct {
		name string
		ask  []string
		from []int // the page of src each key's bytes come from
	}{
		{"lengths swapped", []string{file[0], other[0], other[1], file[3]}, []int{0, 4, 5, 3}},
		{"a key twice", []string{file[0], file[1], file[1], file[3]}, []int{0, 1, 1, 3}},
		{"the file's own", file, []int{0, 1, 2, 3}},
	} {
		before := s.Stats()
		zeroPages(t, p, dst)
		ok, err := s.BatchGetV1(c.ask, dst)
		if err != nil || !all(ok) {
			t.Fatalf("%s: BatchGetV1 = %v, %v", c.name, ok, err)
		}
		for i, j := range c.from {
			if !samePages(t, p, dst[i*ps], src[j*ps]) {
				t.Errorf("%s: key %d served the wrong bytes", c.name, i)
			}
		}
		d := statsDelta(before, s.Stats())
		if d.Hits != 4 || d.Misses != 0 || d.Corrupt != 0 || d.Mismatch != 0 {
			t.Errorf("%s: counted %+v", c.name, d)
		}
	}
}
