//go:build linux

package hicachefile

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
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

// TestForeignFileOverUnnamedNeverServed: another rank's batch file of the same shape
// and keys, renamed or linked over one of this store's unnamed-written
// batch files, at every moment around the link and the watcher's drain of
// its event, is never served: the live store serves its own page or
// misses, and once it misses, writes the page again and serves it.
func TestForeignFileOverUnnamedNeverServed(t *testing.T) {
	for _, when := range []string{"before the add, drained", "before the add", "before the drain", "after the drain"} {
		for _, how := range []string{"rename", "link"} {
			for _, noWatch := range []bool{false, true} {
				for _, mode := range []string{"unnamed", "MaxBytes", "no O_TMPFILE"} {
					t.Run(fmt.Sprintf("%s/%s/NoWatch=%v/%s", when, how, noWatch, mode), func(t *testing.T) {
						testForeignOverUnnamed(t, when, how, noWatch, mode)
					})
				}
			}
		}
	}
}

// With MaxBytes, or where O_TMPFILE is refused, the store's file is
// written under a temp name and renamed into place instead: the same
// holds.
func testForeignOverUnnamed(t *testing.T, when, how string, noWatch bool, mode string) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 6)
	dir := t.TempDir()
	keys := []string{"a", "b"}
	o := newStore(t, Config{Dir: dir, ModelName: "m", TPRank: 1, TPSize: 2}, p)
	if ok, err := o.BatchSetV1(keys, idx[2*ps:4*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	theirs, _ := o.Locate("a")
	var live *Store
	over := func(path string) {
		if how == "rename" {
			if err := os.Rename(theirs.Path, path); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(theirs.Path, path); err != nil {
			t.Fatal(err)
		}
	}
	armed := strings.HasPrefix(when, "before the add")
	fs := writeHooks{placed: func(np string) {
		if armed {
			armed = false
			over(filepath.Join(live.v1Dir, np))
			if when == "before the add, drained" {
				live.Exists("unrelated") // drains the events while the commit is in flight
			}
		}
	}}.errorFS()
	cfg := Config{Dir: dir, ModelName: "m", TPSize: 2, NoWatch: noWatch}
	switch mode {
	case "MaxBytes":
		cfg.MaxBytes = 1 << 30
	case "no O_TMPFILE":
		fs.refuseTmpfile()
	}
	cfg.Syscalls = fs.syscalls()
	live = newStore(t, cfg, p)
	live.Exists("warm")
	if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	if when == "after the drain" {
		live.Exists("unrelated")
	}
	if !strings.HasPrefix(when, "before the add") {
		mine, _ := live.Locate("a")
		over(mine.Path)
	}
	// Before any read, the replaced keys count as stored no more
	// (TestForeignFileOverOwnNotStoredBeforeRead), even when another call drained
	// the events while the commit was in flight.
	if live.Exists("a") {
		t.Error("Exists(a) over another rank's file, before any read")
	}
	dst := idx[4*ps:]
	for round := range 2 {
		zeroPages(t, p, dst)
		ok, err := live.BatchGetV1(keys, dst)
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if ok[i] && !samePages(t, p, dst[i*ps], idx[i*ps]) {
				t.Fatalf("round %d: the live store served a page of %s that is not its own (the other rank's: %v)",
					round, keys[i], samePages(t, p, dst[i*ps], idx[(2+i)*ps]))
			}
		}
		if round == 1 {
			if !all(ok) {
				t.Errorf("after writing again, BatchGetV1 = %v", ok)
			}
			break
		}
		if all(ok) {
			t.Fatal("the live store served both keys from a file the other rank's replaced")
		}
		if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
	}
	live.Exists("drain")
	if own, names := inflightLen(live); own != 0 || names != 0 {
		t.Errorf("%d names expected by the watcher, %d commits in flight after the calls and a drain; want 0, 0", own, names)
	}
}

// TestForeignIdentityNeverServed: a batch file of the same page shape
// written by another model or another TP rank, renamed in place of one of
// ours, is never served by a fresh store.
func TestForeignIdentityNeverServed(t *testing.T) {
	ours := Config{ModelName: "m", TPRank: 0, TPSize: 2}
	for _, other := range []Config{
		{ModelName: "m", TPRank: 1, TPSize: 2},
		{ModelName: "x", TPRank: 0, TPSize: 2},
		{ModelName: "m", TPRank: 0, TPSize: 2, PPRank: 1, PPSize: 2},
		{ModelName: "m", IsMLA: true},
	} {
		p, idx := randomPages(t, 2)
		ps := mhaCfg.PageSize
		dir := t.TempDir()
		ours.Dir, other.Dir = dir, dir
		live := newStore(t, ours, p)
		if ok, err := live.BatchSetV1([]string{"mine"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		o := newStore(t, other, p)
		if ok, err := o.BatchSetV1([]string{"k"}, idx[ps:]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		loc, _ := o.Locate("k")
		planted := filepath.Join(live.v1Dir, "b0123456789abcdef"+live.suffix+batchExt)
		if err := os.Rename(loc.Path, planted); err != nil {
			t.Fatal(err)
		}
		fresh := newStore(t, ours, p)
		for name, s := range map[string]*Store{"live": live, "fresh": fresh} {
			dst, _ := p.Alloc(ps)
			ok, err := s.BatchGetV1([]string{"k"}, dst)
			if err != nil || ok[0] {
				t.Errorf("%s store of %s: BatchGetV1 of %s's file = %v, %v", name, live.suffix, o.suffix, ok, err)
			}
			if s.Exists("k") {
				t.Errorf("%s store of %s: Exists(k) of %s's file", name, live.suffix, o.suffix)
			}
			if s.Stats().Mismatch == 0 {
				t.Errorf("%s store: Stats.Mismatch = 0", name)
			}
			_ = p.Free(dst)
		}
	}
}

// TestMLAIdentityAcrossTPRanks: MLA KV is the same on every TP rank, so an
// MLA store serves the pages another TP rank of the same model wrote.
func TestMLAIdentityAcrossTPRanks(t *testing.T) {
	p, idx := randomPages(t, 1)
	dir := t.TempDir()
	w := newStore(t, Config{Dir: dir, ModelName: "m", IsMLA: true, TPRank: 1, TPSize: 4}, p)
	if ok, err := w.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	r := newStore(t, Config{Dir: dir, ModelName: "m", IsMLA: true, TPRank: 0, TPSize: 2}, p)
	dst, _ := p.Alloc(mhaCfg.PageSize)
	if ok, err := r.BatchGetV1([]string{"k"}, dst); err != nil || !ok[0] {
		t.Fatalf("BatchGetV1 of another TP rank's MLA page = %v, %v", ok, err)
	}
}

// TestOlderFormatSkipped: a batch file of format version 1 (no identity) is
// skipped, never served.
func TestOlderFormatSkipped(t *testing.T) {
	p, idx := randomPages(t, 1)
	dir := t.TempDir()
	w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	if ok, err := w.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	loc, _ := w.Locate("k")
	data, err := os.ReadFile(loc.Path)
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite it as version 1 wrote it: the index, then a 48-byte trailer
	// with the pool fingerprint and no identity.
	tr := data[len(data)-trailerSize:]
	indexOff, indexLen := binary.LittleEndian.Uint64(tr[16:]), binary.LittleEndian.Uint64(tr[24:])
	v1 := append([]byte(nil), data[:indexOff+indexLen]...)
	t1 := len(v1)
	v1 = append(v1, batchfile.Magic...)
	v1 = binary.LittleEndian.AppendUint32(v1, 1)
	v1 = append(v1, tr[12:44]...) // count, indexOff, indexLen, indexCRC, fp
	v1 = binary.LittleEndian.AppendUint32(v1, crc32.Checksum(v1[t1:], castagnoli))
	if err := os.WriteFile(loc.Path, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	r := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	dst, _ := p.Alloc(mhaCfg.PageSize)
	if ok, err := r.BatchGetV1([]string{"k"}, dst); err != nil || ok[0] {
		t.Errorf("BatchGetV1 of a version-1 file = %v, %v", ok, err)
	}
	if st := r.Stats(); st.SkippedFiles != 1 {
		t.Errorf("Stats.SkippedFiles = %d, want 1", st.SkippedFiles)
	}
}

// TestForeignRenamedOverOwnFile: another rank's or model's batch file of
// the same keys and page shape, renamed over a file the live store has
// indexed, passes every per-page check (its keys, offsets and CRCs are its
// own), but is never served: its trailer differs from the one indexed, and
// the read compares them.
func TestForeignRenamedOverOwnFile(t *testing.T) {
	ours := Config{ModelName: "m", TPRank: 0, TPSize: 2}
	for _, other := range []Config{
		{ModelName: "m", TPRank: 1, TPSize: 2},
		{ModelName: "x", TPRank: 0, TPSize: 2},
	} {
		p, idx := randomPages(t, 3)
		ps := mhaCfg.PageSize
		dir := t.TempDir()
		ours.Dir, other.Dir = dir, dir
		live := newStore(t, ours, p)
		if ok, err := live.BatchSetV1([]string{"k"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		o := newStore(t, other, p)
		if ok, err := o.BatchSetV1([]string{"k"}, idx[ps:2*ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		mine, _ := live.Locate("k")
		theirs, _ := o.Locate("k")
		if err := os.Rename(theirs.Path, mine.Path); err != nil {
			t.Fatal(err)
		}
		before := live.Stats().Mismatch
		ok, err := live.BatchGetV1([]string{"k"}, idx[2*ps:])
		if err != nil || ok[0] {
			t.Errorf("live store of %s served %s's file renamed over its own: %v, %v", live.suffix, o.suffix, ok, err)
		}
		if live.Stats().Mismatch == before {
			t.Errorf("live store: Stats.Mismatch did not count %s's file", o.suffix)
		}
	}
}
