package hicachefile

import (
	"hash/fnv"
	"os"
	"testing"
)

// TestFNV64a checks fnv64a against hash/fnv, and that identities that
// differ in any field a store compares get different keys.
func TestFNV64a(t *testing.T) {
	for _, in := range []string{"", "a", "hicache identity"} {
		h := fnv.New64a()
		h.Write([]byte(in))
		if got, want := fnv64a([]byte(in)), h.Sum64(); got != want {
			t.Fatalf("fnv64a(%q) = %x, want %x", in, got, want)
		}
	}
	base := identity{model: "m", tpRank: 1, tpSize: 2, ppRank: 0, ppSize: 1}
	for _, other := range []identity{
		{model: "n", tpRank: 1, tpSize: 2, ppSize: 1},
		{model: "m", tpRank: 0, tpSize: 2, ppSize: 1},
		{model: "m", tpRank: 1, tpSize: 4, ppSize: 1},
		{model: "m", tpRank: 1, tpSize: 2, ppRank: 1, ppSize: 2},
		{model: "m", tpRank: 1, tpSize: 2, ppSize: 1, mla: true},
	} {
		if other.key() == base.key() {
			t.Fatalf("%+v and %+v share a key", other, base)
		}
	}
	mla := identity{model: "m", tpRank: 1, tpSize: 2, ppSize: 1, mla: true}
	if other := (identity{model: "m", tpRank: 0, tpSize: 4, ppSize: 1, mla: true}); other.key() != mla.key() {
		t.Fatal("MLA identities that differ only in TP rank and size get different keys")
	}
}

// TestForeignFileOverOwnNeverServed: another model's or another rank's batch file
// of the same shape and the same keys, renamed over one of this store's
// batch files that a live store has indexed, is never served by it.
func TestForeignFileOverOwnNeverServed(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		for _, copyInPlace := range []bool{false, true} {
			testForeignFileOverOwn(t, noWatch, copyInPlace)
		}
	})
}

func testForeignFileOverOwn(t *testing.T, noWatch, copyInPlace bool) {
	{
		ours := Config{ModelName: "m", TPRank: 0, TPSize: 2, NoWatch: noWatch}
		for _, other := range []Config{
			{ModelName: "m", TPRank: 1, TPSize: 2},
			{ModelName: "x", TPRank: 0, TPSize: 2},
			{ModelName: "m", TPRank: 0, TPSize: 2, PPRank: 1, PPSize: 2},
		} {
			ps := mhaCfg.PageSize
			p, idx := randomPages(t, 6)
			dir := t.TempDir()
			ours.Dir, other.Dir = dir, dir
			keys := []string{"a", "b"}
			live := newStore(t, ours, p)
			if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			o := newStore(t, other, p)
			if ok, err := o.BatchSetV1(keys, idx[2*ps:4*ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			mine, _ := live.Locate("a")
			theirs, _ := o.Locate("a")
			putOver(t, theirs.Path, mine.Path, copyInPlace)
			before := live.Stats().Mismatch
			dst := idx[4*ps:]
			ok, err := live.BatchGetV1(keys, dst)
			if err != nil {
				t.Fatal(err)
			}
			for i := range keys {
				if ok[i] && samePages(t, p, dst[i*ps], idx[(2+i)*ps]) {
					t.Errorf("%s over %s: live store served the other store's page of %s", o.suffix, live.suffix, keys[i])
				}
			}
			if live.Stats().Mismatch == before {
				t.Errorf("%s over %s: Stats.Mismatch not counted", o.suffix, live.suffix)
			}
			if live.Exists("a") {
				t.Errorf("%s over %s: Exists(a) after the read", o.suffix, live.suffix)
			}
			// Written again as this store's own, and served.
			if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			if ok, err := live.BatchGetV1(keys, dst); err != nil || !all(ok) || !samePages(t, p, dst[0], idx[0]) || !samePages(t, p, dst[ps], idx[ps]) {
				t.Errorf("%s over %s: BatchGetV1 after writing again = %v, %v", o.suffix, live.suffix, ok, err)
			}
		}
	}
}

// TestForeignFileOverOwnNotStoredBeforeRead: right after another store's file of
// the same shape and keys is renamed over one of this store's, before
// any read, the live store neither reports the keys stored nor skips them
// in BatchSetV1.
func TestForeignFileOverOwnNotStoredBeforeRead(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		// Renamed: a file copied in place (same inode) is caught when
		// read (TestForeignFileOverOwnNeverServed).
		testForeignOverOwnBeforeRead(t, noWatch)
	})
}

func testForeignOverOwnBeforeRead(t *testing.T, noWatch bool) {
	{
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 6)
		dir := t.TempDir()
		keys := []string{"a", "b"}
		live := newStore(t, Config{Dir: dir, ModelName: "m", TPSize: 2, NoWatch: noWatch}, p)
		if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
		o := newStore(t, Config{Dir: dir, ModelName: "m", TPRank: 1, TPSize: 2}, p)
		if ok, err := o.BatchSetV1(keys, idx[2*ps:4*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
		mine, _ := live.Locate("a")
		theirs, _ := o.Locate("a")
		if err := os.Rename(theirs.Path, mine.Path); err != nil {
			t.Fatal(err)
		}
		if live.Exists("a") {
			t.Errorf("Exists(a) = true over another rank's file")
		}
		before := live.Stats().Sets
		if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
		if live.Stats().Sets == before {
			t.Errorf("BatchSetV1 skipped keys held only by another rank's file")
		}
		dst := idx[4*ps:]
		if ok, err := live.BatchGetV1(keys, dst); err != nil || !all(ok) || !samePages(t, p, dst[0], idx[0]) || !samePages(t, p, dst[ps], idx[ps]) {
			t.Errorf("BatchGetV1 after writing again = %v, %v", ok, err)
		}
	}
}
