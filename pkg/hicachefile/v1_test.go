package hicachefile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestBatchSetV1FailedChunk removes the V1 directory under an open store,
// so that creating a batch file fails: the call returns the error, and the
// failed chunk and every later entry are false, while a key before it that
// already existed stays true. Nothing panics, and reads of the lost pages
// are misses.
func TestBatchSetV1FailedChunk(t *testing.T) {
	p := newPool(t, mhaCfg)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	idx, _ := p.Alloc(3 * mhaCfg.PageSize)
	fillRandom(t, p, idx)
	page, _ := p.GetDataPage(idx[0])
	if err := s.Set("old", page); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BatchSetV1([]string{"v"}, idx[:mhaCfg.PageSize]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if err := os.RemoveAll(s.v1Dir); err != nil {
		t.Fatal(err)
	}

	ok, err := s.BatchSetV1([]string{"old", "new1", "new2"}, idx)
	if err == nil || !bytes.Equal(bools(ok), bools([]bool{true, false, false})) {
		t.Fatalf("BatchSetV1 = %v, %v; want [true false false] and an error", ok, err)
	}
	ok, err = s.BatchSetV1([]string{"new1", "old"}, idx[:2*mhaCfg.PageSize])
	if err == nil || ok[0] || ok[1] {
		t.Fatalf("BatchSetV1 = %v, %v; want every entry from the failed chunk on false", ok, err)
	}
	if st := s.Stats(); st.Errors == 0 {
		t.Fatalf("Stats = %+v, want errors counted", st)
	}
	// The page in the removed batch file is a miss; the old file still loads.
	ok, err = s.BatchGetV1([]string{"v", "old"}, idx[:2*mhaCfg.PageSize])
	if err != nil || ok[0] || !ok[1] {
		t.Fatalf("BatchGetV1 = %v, %v; want [false true]", ok, err)
	}
	if _, found := s.Locate("v"); found {
		t.Fatal("Locate still finds a page whose file is gone")
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
// store that opens the directory should serve the good copy; which copy its
// index takes depends on directory order, so try several directories.
//
// Known bug, not fixed here: refresh keeps the first copy of a key it lists
// and forgets the others, and finishPage's drop never falls back to them, so
// in about half the directories the bad copy shadows the good one until the
// key is written yet again. Set HICACHEFILE_KNOWN_BUGS=1 to run it.
func TestCorruptCopyShadowsGoodCopy(t *testing.T) {
	if os.Getenv("HICACHEFILE_KNOWN_BUGS") == "" {
		t.Skip("known bug: a corrupt copy of a key shadows a good copy in another batch file; set HICACHEFILE_KNOWN_BUGS=1 to run")
	}
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
