package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
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

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestAdv4OpenatRawLikeOpenat: openatRaw, the default Syscalls.Openat,
// returns what unix.Openat returns, errors comparable with ==, for the
// names that unix.Openat treats apart: a NUL inside, 255 and 256 bytes,
// empty, missing, existing with O_EXCL, a directory opened for writing,
// a symlink with O_NOFOLLOW.
func TestAdv4OpenatRawLikeOpenat(t *testing.T) {
	dir := t.TempDir()
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Close(dfd) }()
	long255 := strings.Repeat("a", 255)
	if err := os.WriteFile(filepath.Join(dir, long255), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	rd := unix.O_RDONLY | unix.O_CLOEXEC
	for _, c := range []struct {
		name, path string
		flags      int
		want       error
	}{
		{"255 bytes", long255, rd, nil},
		{"256 bytes", strings.Repeat("a", 256), rd, unix.ENAMETOOLONG},
		{"NUL inside", "f\x00x", rd, unix.EINVAL},
		{"NUL at the end", "f\x00", rd, unix.EINVAL},
		{"empty", "", rd, unix.ENOENT},
		{"missing", "nope", rd, unix.ENOENT},
		{"O_EXCL over a file", "f", unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_CLOEXEC, unix.EEXIST},
		{"directory for writing", "d", unix.O_WRONLY | unix.O_CLOEXEC, unix.EISDIR},
		{"symlink, O_NOFOLLOW", "l", rd | unix.O_NOFOLLOW, unix.ELOOP},
		{"path through a file", "f/x", rd, unix.ENOTDIR},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, open := range []struct {
				name string
				f    func(int, string, int, uint32) (int, error)
			}{{"openatRaw", openatRaw}, {"unix.Openat", unix.Openat}} {
				fd, err := open.f(dfd, c.path, c.flags, 0o644)
				if err != c.want {
					t.Errorf("%s = %d, %v; want error %v", open.name, fd, err, c.want)
				}
				if err == nil {
					_ = unix.Close(fd)
				}
			}
		})
	}
}

// TestAdv4OpenatRawLargeFile: openatRaw opens a file of more than 2 GiB.
// unix.Openat adds O_LARGEFILE, which 32-bit kernels (GOARCH=386, arm)
// need for such a file: without it the open fails with EOVERFLOW. Run
// with GOARCH=386 to see it.
func TestAdv4OpenatRawLargeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(3 << 30); err != nil { // sparse
		t.Skip("no room for a sparse 3 GiB file:", err)
	}
	_ = f.Close()
	fd, err := openatRaw(unix.AT_FDCWD, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("openatRaw of a 3 GiB file: %v", err)
	}
	_ = unix.Close(fd)
}

// TestAdv4VectoredPastFourGiB: preadvRaw and pwritevRaw move bytes at an
// offset past 4 GiB, where a 32-bit kernel takes the offset's high word
// from a system call argument of its own.
func TestAdv4VectoredPastFourGiB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	const off = 5<<30 + 3
	fd := int(f.Fd())
	if err := vectored(pwritevRaw, fd, [][]byte{[]byte("abc"), []byte("de")}, off); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := unix.Pread(fd, got, off); err != nil || string(got) != "abcde" {
		t.Fatalf("pwritevRaw at 5 GiB: pread finds %q, %v", got, err)
	}
	if _, err := unix.Pwrite(fd, []byte("xyz"), off+8); err != nil {
		t.Fatal(err)
	}
	a, b := make([]byte, 1), make([]byte, 2)
	if err := vectored(preadvRaw, fd, [][]byte{a, b}, off+8); err != nil || string(a)+string(b) != "xyz" {
		t.Fatalf("preadvRaw at 5 GiB = %q, %v; want xyz", string(a)+string(b), err)
	}
}

// TestAdv4PreadNowaitPastFourGiB: preadNowait, which loads batch file
// indexes, reads at an offset past 4 GiB (see TestAdv4VectoredPastFourGiB).
func TestAdv4PreadNowaitPastFourGiB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	const off = 5<<30 + 3
	if _, err := f.WriteAt([]byte("abc"), off); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 3)
	if n, err := preadNowait(int(f.Fd()), got, off); err != unix.EAGAIN && (err != nil || n != 3 || string(got) != "abc") {
		t.Fatalf("preadNowait at 5 GiB = %d, %q, %v; want abc", n, got, err)
	}
}

// TestAdv4PredictedLikeLookedUp is a differential test of the guessed
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
func TestAdv4PredictedLikeLookedUp(t *testing.T) {
	const n = adv4Keys
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

// testPredictedLikeLookedUp is TestAdv4PredictedLikeLookedUp for a pool
// of cfg, the keys lo to hi of a batch of adv4Keys, and one damage; eio, when
// not zero, is the pages [from, to) whose reads fail with EIO.
func testPredictedLikeLookedUp(t *testing.T, cfg hostcache.Config, direct bool, lo, hi int, damage func(t *testing.T, path, other string, loc []Location), eio [2]int) {
	const n = adv4Keys
	p := newPool(t, cfg)
	ps := cfg.PageSize
	src, err := p.Alloc(2 * n * ps)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, p, src)
	keys, other := make([]string, n), make([]string, n)
	for i := range keys {
		keys[i], other[i] = sglangKey("adv4", i), sglangKey("adv4 other", i)
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

// adv4Keys is the size of the batch TestAdv4PredictedLikeLookedUp damages.
const adv4Keys = 7

// statsDelta returns the counters of b minus those of a that a read
// changes.
func statsDelta(a, b Stats) Stats {
	return Stats{Gets: b.Gets - a.Gets, GetBytes: b.GetBytes - a.GetBytes, Hits: b.Hits - a.Hits, Misses: b.Misses - a.Misses,
		Corrupt: b.Corrupt - a.Corrupt, Mismatch: b.Mismatch - a.Mismatch, Errors: b.Errors - a.Errors,
		SpecialFiles: b.SpecialFiles - a.SpecialFiles, SkippedFiles: b.SkippedFiles - a.SkippedFiles}
}

// flipAt inverts the byte at off of the file at path.
func flipAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// truncateTo sets the size of the file at path.
func truncateTo(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

// TestAdv4WrittenCRCsAreCRC32C: the CRC32C that BatchSetV1 records for
// each page (pageCRCs, a block of 48 pages at a time, three at once) is
// hash/crc32's of the page's bytes as they lie in the file, for batches of
// 1 to 100 pages (one or two left over a group of three, a block and one
// more) and pools of every layout whose buffers crc32cPages takes (of
// 256, 128 or 384 bytes) and leaves to hash/crc32 (of 18 or 90 bytes). A read computes its CRCs with the same
// pageCRCs, so only a check against another implementation finds a CRC
// that both get wrong alike.
func TestAdv4WrittenCRCsAreCRC32C(t *testing.T) {
	seed := seedCfg
	seed.Pages = 128
	mha := mhaCfg
	mha.Pages = 128
	odd := hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.LayerFirst, DType: hostcache.Float16,
		PageSize: 3, Pages: 128, LayerNum: 5, HeadNum: 1, HeadDim: 3}
	pools := []struct {
		name string
		cfg  hostcache.Config
	}{{"seed", seed}}
	for _, layout := range hostcache.Layouts {
		for _, c := range []hostcache.Config{mha, odd} {
			c.Layout = layout
			pools = append(pools, struct {
				name string
				cfg  hostcache.Config
			}{fmt.Sprintf("%s-%d", layout, c.HeadDim), c})
		}
	}
	for _, pc := range pools {
		for _, n := range []int{1, 2, 3, 4, 47, 48, 49, 50, 100} {
			t.Run(fmt.Sprintf("%s/%d", pc.name, n), func(t *testing.T) {
				p := newPool(t, pc.cfg)
				src, err := p.Alloc(n * pc.cfg.PageSize)
				if err != nil {
					t.Fatal(err)
				}
				fillRandom(t, p, src)
				s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
				keys := make([]string, n)
				for i := range keys {
					keys[i] = sglangKey("crc", n, i)
				}
				if ok, err := s.BatchSetV1(keys, src); err != nil || !all(ok) {
					t.Fatal(ok, err)
				}
				files, _ := filepath.Glob(filepath.Join(s.v1Dir, "*.batch.bin"))
				pages := 0
				for _, f := range files {
					b, err := os.ReadFile(f)
					if err != nil {
						t.Fatal(err)
					}
					tr, err := batchfile.ParseTrailer(b[len(b)-trailerSize:], int64(len(b)))
					if err != nil {
						t.Fatal(err)
					}
					ents, err := batchfile.ParseIndex(b[tr.IndexOff:tr.IndexOff+tr.IndexLen], tr)
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range ents {
						if got := crc32.Checksum(b[e.Off:e.Off+e.Length], castagnoli); got != e.CRC {
							t.Errorf("%s: page at %d of %s: entry's CRC %08x, hash/crc32 %08x", filepath.Base(f), e.Off, e.Key, e.CRC, got)
						}
						pages++
					}
				}
				if pages != n {
					t.Fatalf("%d pages in %d files, want %d", pages, len(files), n)
				}
			})
		}
	}
}

// TestAdv4LargeGuessedRead: a batch of 4200 seed pages (2.1 MB: three
// windows of reads, and pieces for two IO workers) read back as written,
// guessed, and in reverse, looked up, serves every page with its bytes.
func TestAdv4LargeGuessedRead(t *testing.T) {
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

// countTrue returns how many of ok are true.
func countTrue(ok []bool) int {
	c := 0
	for _, b := range ok {
		if b {
			c++
		}
	}
	return c
}

// TestAdv4Crc32cPagesStopsCleanly: crc32cPages, given groups of which one
// has a buffer it does not take, stops before that group, returns how
// many it did, and stores nothing for the group it stopped in, whichever
// of the group's pages and buffers differs; it takes buffers of 0 and of
// crc3Max bytes, not of crc3Max+8 or of a length not a multiple of 8.
func TestAdv4Crc32cPagesStopsCleanly(t *testing.T) {
	const bpp, groups = 3, 3
	mem := make([]byte, 3*groups*bpp*(crc3Max+8))
	for i := range mem {
		mem[i] = byte(i*7 + i>>8)
	}
	for _, c := range []struct {
		name     string
		page, k  int // the page and buffer that differ
		length   int // all other buffers' length
		odd      int // that buffer's length
		wantDone int
	}{
		{"page B's last buffer longer", 7, 2, 64, 72, 2},
		{"page C's first buffer shorter", 8, 0, 64, 56, 2},
		{"page A of the first group", 0, 1, 64, 0, 0},
		{"a length not a multiple of 8", 4, 0, 64, 63, 1},
		{"all 60 bytes", 0, 0, 60, 60, 0},
		{"all empty", 0, 0, 0, 0, groups},
		{"crc3Max", 0, 0, crc3Max, crc3Max, groups},
		{"crc3Max+8 everywhere", 0, 0, crc3Max + 8, crc3Max + 8, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			bufs := make([][]byte, 3*groups*bpp)
			pos := 0
			for i := range bufs {
				l := c.length
				if i == c.page*bpp+c.k {
					l = c.odd
				}
				bufs[i] = mem[pos : pos+l : pos+l]
				pos += l
			}
			crcs := make([]uint32, 3*groups+1)
			for i := range crcs {
				crcs[i] = 0xdeadbeef
			}
			done := crc32cPages(&crcs[0], &bufs[0], bpp, groups)
			if !haveCRC3 {
				c.wantDone = 0
			}
			if done != c.wantDone {
				t.Fatalf("done = %d, want %d", done, c.wantDone)
			}
			for j := range crcs {
				want := uint32(0xdeadbeef)
				if j < 3*done {
					want = pageCRC(bufs[j*bpp : (j+1)*bpp])
				}
				if crcs[j] != want {
					t.Errorf("crcs[%d] = %08x, want %08x", j, crcs[j], want)
				}
			}
		})
	}
}

// TestAdv4GuessedReadsUnderFire: stores A and B share a directory; while
// two goroutines read A's batches back as written (guessed), some with a
// key between swapped for another batch's, B rewrites batches and clears
// the directory, A rewrites them and clears it too, and a third goroutine flips bytes in,
// truncates and grows batch files. Every page served must hold its key's
// bytes (a key's bytes never change), no call may fail, and closing the
// stores leaves no descriptor open.
func TestAdv4GuessedReadsUnderFire(t *testing.T) {
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
}

// TestAdv4GuessedKeysOfOtherLengths: keys between the first and the last
// whose lengths differ from those of the file's keys at their places, but
// add up to the same, and a key asked twice, are each read from their own
// copy, not from the place the guess gave them.
func TestAdv4GuessedKeysOfOtherLengths(t *testing.T) {
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
