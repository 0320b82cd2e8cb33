//go:build linux

package hicachefile

import (
	"os"
	"slices"
	"testing"
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
