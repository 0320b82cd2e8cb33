//go:build linux

package hicachefile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

// TestDigestCollisionNeverServesOtherKey: with the index forged so that key b's
// digest also names key a's entry (what a digest collision does), no read
// serves a's page for b, a stays served, and b's own copy is found.
func TestDigestCollisionNeverServesOtherKey(t *testing.T) {
	ps := mhaCfg.PageSize
	for _, bStored := range []bool{false, true} {
		p, idx := randomPages(t, 4)
		s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
		if bStored {
			if ok, err := s.BatchSetV1([]string{"b"}, idx[ps:2*ps]); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
		}
		if ok, err := s.BatchSetV1([]string{"a"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		// Forge: a's file holds a second entry, under b's digest, pointing
		// at a's page and index entry.
		ha, hb := s.idx.Hash("a"), s.idx.Hash("b")
		refs := make([]index.Ref, 1)
		s.idx.Lookup([]uint64{ha}, s.pool.Load().fp, refs, nil)
		name, meta, ok := s.idx.File(refs[0].File)
		if !ok {
			t.Fatal("a not indexed")
		}
		s.idx.AddHashed(name, meta, []uint64{hb, ha}, []uint32{refs[0].Ent, refs[0].Ent}, []uint32{refs[0].Page, refs[0].Page})
		dst, _ := p.Alloc(2 * ps)
		got, err := s.BatchGetV1([]string{"b", "a"}, dst)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != bStored || (bStored && !samePages(t, p, dst[0], idx[ps])) {
			t.Errorf("b stored=%v: BatchGetV1(b) = %v over a forged collision", bStored, got[0])
		}
		if !got[1] || !samePages(t, p, dst[ps], idx[0]) {
			t.Errorf("b stored=%v: BatchGetV1(a) = %v after a forged collision", bStored, got[1])
		}
	}
}

// TestGrownFileMissedWithoutReadingIt: a much larger file put in place of an
// indexed one-page batch file (copied over it in place, or renamed over
// it unseen by a polling store) is a miss found without reading the big
// file's pages: the read moves no more than the page asked for and the new
// file's index tail.
func TestGrownFileMissedWithoutReadingIt(t *testing.T) {
	for _, how := range []string{"copy", "rename"} {
		t.Run(how, func(t *testing.T) {
			ps := mhaCfg.PageSize
			pc := mhaCfg
			pc.Pages = 200
			p := newPool(t, pc)
			idx, _ := p.Alloc(130 * ps)
			fillRandom(t, p, idx)
			fs := newErrorFS().counting(opPreadv) // counts the bytes read
			dir := t.TempDir()
			s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true, Syscalls: fs.syscalls()}, p)
			if ok, err := s.BatchSetV1([]string{"a"}, idx[:ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			// Another model's batch of 128 pages, "a" among them.
			o := newStore(t, Config{Dir: dir, ModelName: "x"}, p)
			keys := []string{"a"}
			for i := 1; i < 128; i++ {
				keys = append(keys, fmt.Sprintf("o%d", i))
			}
			if ok, err := o.BatchSetV1(keys, idx[ps:129*ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			mine, _ := s.Locate("a")
			theirs, _ := o.Locate("a")
			putOver(t, theirs.Path, mine.Path, how == "copy")
			dst := idx[129*ps:]
			read0 := fs.read.Load()
			ok, err := s.BatchGetV1([]string{"a"}, dst)
			if err != nil {
				t.Fatal(err)
			}
			if ok[0] && samePages(t, p, dst[0], idx[ps]) {
				t.Error("served the other model's page")
			}
			// The page, and the new file's index read once from its tail
			// (the store reloads a file found other than indexed).
			if got, limit := fs.read.Load()-read0, int64(p.PageBytes()+2*loadTail); got > limit {
				t.Errorf("BatchGetV1 read %d bytes of the file put in place, want at most %d", got, limit)
			}
		})
	}
}

// TestInPlaceFlipCountedCorruptOnce: a payload byte of this store's own batch
// file, written with no name (so with no inode recorded), flipped in place
// (the spec "Corruption a flipped payload byte" does it with
// os.WriteFile): the bad page is read, counted corrupt and dropped once;
// the in-place write's close event must not load the file again, which
// brought the dropped entry back to be read, and counted, a second time
// in the same call.
func TestInPlaceFlipCountedCorruptOnce(t *testing.T) {
	const n = 4
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 2*n)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	keys := []string{"c0", "c1", "c2", "c3"}
	if ok, err := s.BatchSetV1(keys, idx[:n*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	loc, _ := s.Locate("c1")
	data, err := os.ReadFile(loc.Path)
	if err != nil {
		t.Fatal(err)
	}
	data[loc.Offset+loc.Length/3] ^= 0xff
	if err := os.WriteFile(loc.Path, data, 0o644); err != nil { // in place: the same inode
		t.Fatal(err)
	}
	for round := range 2 {
		ok, err := s.BatchGetV1(keys, idx[n*ps:])
		if err != nil || !slices.Equal(ok, []bool{true, false, true, true}) {
			t.Fatalf("round %d: BatchGetV1 = %v, %v", round, ok, err)
		}
		if c := s.Stats().Corrupt; c != 1 {
			t.Errorf("round %d: Stats.Corrupt = %d, want 1 (the bad page read once, then dropped)", round, c)
		}
	}
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
