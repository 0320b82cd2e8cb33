//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestBatchSetV1FailedChunk makes creating batch files fail, so that the
// first chunk to write fails: the call returns the error, and the failed
// chunk and every later entry are false, while a key before it that already
// existed stays true. Nothing panics, and the unwritten pages are misses.
func TestBatchSetV1FailedChunk(t *testing.T) {
	var failCreate atomic.Bool
	sys := newErrorFS().fail(opOpenat, func(c *sysCall) bool { // creating a file fails while failCreate
		return failCreate.Load() && (c.flags&unix.O_CREAT != 0 || c.flags&unix.O_TMPFILE == unix.O_TMPFILE)
	}, unix.ENOSPC).syscalls()
	p := newPool(t, mhaCfg)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", Syscalls: sys}, p)
	idx, _ := p.Alloc(3 * mhaCfg.PageSize)
	fillRandom(t, p, idx)
	page, _ := p.GetDataPage(idx[0])
	if err := s.Set("old", page); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BatchSetV1([]string{"v"}, idx[:mhaCfg.PageSize]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	failCreate.Store(true)

	ok, err := s.BatchSetV1([]string{"v", "new1", "new2"}, idx)
	if !errors.Is(err, unix.ENOSPC) || !bytes.Equal(bools(ok), bools([]bool{true, false, false})) {
		t.Fatalf("BatchSetV1 = %v, %v; want [true false false] and ENOSPC", ok, err)
	}
	ok, err = s.BatchSetV1([]string{"new1", "v"}, idx[:2*mhaCfg.PageSize])
	if err == nil || ok[0] || ok[1] {
		t.Fatalf("BatchSetV1 = %v, %v; want every entry from the failed chunk on false", ok, err)
	}
	if st := s.Stats(); st.Errors == 0 {
		t.Fatalf("Stats = %+v, want errors counted", st)
	}
	ok, err = s.BatchGetV1([]string{"v", "old", "new1"}, idx)
	if err != nil || !ok[0] || !ok[1] || ok[2] {
		t.Fatalf("BatchGetV1 = %v, %v; want [true true false]", ok, err)
	}
}

// TestV1DirReplaced: an operator removes or moves the V1 directory under an
// open store. The store must find its way to the directory now at the path:
// its writes land there, and pages other stores write there are found.
func TestV1DirReplaced(t *testing.T) {
	for _, how := range []string{"removed", "moved"} {
		t.Run(how, func(t *testing.T) {
			bothModes(t, func(t *testing.T, noWatch bool) {
				ps := mhaCfg.PageSize
				p, idx := randomPages(t, 2)
				dir := t.TempDir()
				a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
				if ok, err := a.BatchSetV1([]string{"before"}, idx[:ps]); err != nil || !ok[0] {
					t.Fatal(ok, err)
				}
				var err error
				if how == "removed" {
					err = os.RemoveAll(a.v1Dir)
				} else {
					err = os.Rename(a.v1Dir, a.v1Dir+".old")
				}
				if err != nil {
					t.Fatal(err)
				}
				b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
				if ok, err := b.BatchSetV1([]string{"kb"}, idx[:ps]); err != nil || !ok[0] {
					t.Fatal(ok, err)
				}
				if !a.Exists("kb") {
					t.Error("a does not find a page written into the new directory")
				}
				if a.Exists("before") {
					t.Error("a still finds a page whose directory is gone from the path")
				}
				if ok, err := a.BatchSetV1([]string{"ka"}, idx[ps:]); err != nil || !ok[0] {
					t.Fatalf("a cannot write after the directory was %s: %v, %v", how, ok, err)
				}
				if !b.Exists("ka") {
					t.Error("b does not find a's page: a wrote it somewhere else")
				}
			})
		})
	}
}

func bools(b []bool) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		if v {
			out[i] = 1
		}
	}
	return out
}

// TestCorruptCopyShadowsGoodCopy: after a corrupt page is dropped, the key
// no longer exists, so the cache controller writes it again into a second
// batch file. The directory then holds a bad and a good copy of the key. A
// store that opens the directory must serve the good copy in one call,
// whichever copy its index took first (that depends on directory order, so
// several directories are tried).
func TestCorruptCopyShadowsGoodCopy(t *testing.T) {
	p := newPool(t, mhaCfg)
	src, _ := p.Alloc(mhaCfg.PageSize)
	dst, _ := p.Alloc(mhaCfg.PageSize)
	misses := 0
	const tries = 12
	for range tries {
		cfg := Config{Dir: t.TempDir(), ModelName: "m"}
		s := newStore(t, cfg, p)
		fillRandom(t, p, src)
		want, _ := p.GetDataPage(src[0])
		if ok, err := s.BatchSetV1([]string{"k"}, src); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		loc, _ := s.Locate("k")
		b, _ := os.ReadFile(loc.Path)
		b[loc.Offset] ^= 1
		if err := os.WriteFile(loc.Path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if ok, _ := s.BatchGetV1([]string{"k"}, dst); ok[0] {
			t.Fatal("a corrupt page was served")
		}
		if s.Exists("k") {
			t.Fatal("a dropped page still exists")
		}
		if ok, err := s.BatchSetV1([]string{"k"}, src); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if files, _ := filepath.Glob(filepath.Join(s.v1Dir, "*.batch.bin")); len(files) != 2 {
			t.Fatalf("%d batch files, want 2", len(files))
		}

		r := newStore(t, cfg, p)
		ok, err := r.BatchGetV1([]string{"k"}, dst)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := p.GetDataPage(dst[0]); ok[0] && !bytes.Equal(got, want) {
			t.Fatal("wrong bytes served")
		}
		if !ok[0] {
			misses++
		}
	}
	if misses > 0 {
		t.Errorf("a new store missed a key with a good copy on disk in %d of %d directories: the corrupt copy shadows it", misses, tries)
	}
}

// TestCopiesPerPool: a key stored by a bfloat16 pool does not count as
// stored for a float16 pool of the same byte size, which could never load
// it. The float16 pool writes its own copy, and each pool reads back its own
// bytes.
func TestCopiesPerPool(t *testing.T) {
	bfCfg := mhaCfg
	bfCfg.DType = hostcache.BFloat16
	fp16, bf16 := newPool(t, mhaCfg), newPool(t, bfCfg)
	dir := t.TempDir()
	a := newStore(t, Config{Dir: dir, ModelName: "m"}, fp16)
	b := newStore(t, Config{Dir: dir, ModelName: "m"}, bf16)
	srcA, _ := fp16.Alloc(mhaCfg.PageSize)
	dstA, _ := fp16.Alloc(mhaCfg.PageSize)
	srcB, _ := bf16.Alloc(mhaCfg.PageSize)
	dstB, _ := bf16.Alloc(mhaCfg.PageSize)
	fillRandom(t, fp16, srcA)
	fillRandom(t, bf16, srcB)
	if ok, err := b.BatchSetV1([]string{"k"}, srcB); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if ok, err := a.BatchGetV1([]string{"k"}, dstA); err != nil || ok[0] {
		t.Fatalf("float16 pool loaded a bfloat16 page: %v, %v", ok, err)
	}
	before := a.Stats().Sets
	if ok, err := a.BatchSetV1([]string{"k"}, srcA); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if a.Stats().Sets != before+1 {
		t.Fatal("the float16 copy was not written: the bfloat16 copy counted as present")
	}
	for _, c := range []struct {
		s        *Store
		p        *hostcache.Pool
		src, dst []int64
	}{{a, fp16, srcA, dstA}, {b, bf16, srcB, dstB}, {newStore(t, Config{Dir: dir, ModelName: "m"}, fp16), fp16, srcA, dstA}} {
		if ok, err := c.s.BatchGetV1([]string{"k"}, c.dst); err != nil || !ok[0] {
			t.Fatalf("%s pool: %v, %v", c.p.Config().DType, ok, err)
		}
		if !samePages(t, c.p, c.src[0], c.dst[0]) {
			t.Fatalf("%s pool read back other bytes", c.p.Config().DType)
		}
	}
}
