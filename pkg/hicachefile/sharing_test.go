//go:build linux

package hicachefile

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestForeignWriteDuringOwnWrite: a page another store renames into place
// while this store is writing its own batch must still be found, and stay
// found after more writes of this store's own.
func TestForeignWriteDuringOwnWrite(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 2)
		dir := t.TempDir()
		b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		armed := true
		// B writes just before A's batch file gets its name, by a link
		// (an unnamed file) or a rename (a temp file).
		placing := func(np string) {
			if armed && strings.HasSuffix(np, batchExt) {
				armed = false
				if ok, err := b.BatchSetV1([]string{"kb"}, idx[ps:]); err != nil || !ok[0] {
					t.Errorf("B: %v %v", ok, err)
				}
			}
		}
		sys := newErrorFS().before(opRenameat|opLinkat, func(c *sysCall) { placing(c.path) }).syscalls()
		a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, Syscalls: sys}, p)
		if ok, err := a.BatchSetV1([]string{"ka"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if !a.Exists("kb") {
			t.Error("Exists(kb) = false although B wrote kb before A's write finished")
		}
		if ok, _ := a.BatchGetV1([]string{"kb"}, idx[:ps]); !ok[0] {
			t.Error("BatchGetV1(kb) = false")
		}
		fillRandom(t, p, idx[:ps])
		if ok, err := a.BatchSetV1([]string{"ka2"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if !a.Exists("kb") {
			t.Error("kb lost after another own write")
		}
	})
}

// TestForeignClearSeen: after another store clears the directory, this
// store must neither report the cleared keys as present nor skip writing
// them again.
func TestForeignClearSeen(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		p, idx := randomPages(t, 1)
		dir := t.TempDir()
		a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		if ok, err := a.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if err := b.Clear(); err != nil {
			t.Fatal(err)
		}
		if a.Exists("k") {
			t.Fatal("a cleared key still exists")
		}
		if ok, _ := a.BatchGetV1([]string{"k"}, idx); ok[0] {
			t.Fatal("a cleared page was served")
		}
		before := a.Stats().Sets
		if ok, err := a.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		if a.Stats().Sets != before+1 {
			t.Fatal("BatchSetV1 skipped a key whose file another store had cleared")
		}
		if !b.Exists("k") {
			t.Fatal("the rewritten key is not found by the store that cleared it")
		}
	})
}

// TestTransientLoadFailureRetried: one transient failure (EIO) while
// loading another store's batch file must not hide its pages for good.
// (EMFILE is waited out within the open itself.)
func TestTransientLoadFailureRetried(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 2)
		dir := t.TempDir()
		var armed atomic.Bool
		sys := newErrorFS().fail(opOpenat, func(c *sysCall) bool { // once armed, the next open of a batch file
			return strings.HasSuffix(c.path, batchExt) && armed.CompareAndSwap(true, false)
		}, unix.EIO).syscalls()
		a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, Syscalls: sys}, p)
		b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		if ok, err := b.BatchSetV1([]string{"kb"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		armed.Store(true)
		found := a.Exists("kb") // the load fails here, or on the retry below
		if armed.Load() {
			t.Fatal("setup: the fault did not fire")
		}
		if !found && !a.Exists("kb") {
			t.Errorf("kb not found after a transient EMFILE; stats %+v", a.Stats())
		}
		if st := a.Stats(); st.SkippedFiles != 0 || st.Errors == 0 {
			t.Errorf("a transient failure counted as a skipped file: %+v", st)
		}
	})
}

// TestExistsIgnoresForeignDtype: once a pool is registered, Exists counts
// only copies that pool can load.
func TestExistsIgnoresForeignDtype(t *testing.T) {
	dir := t.TempDir()
	p16 := newPool(t, mhaCfg)
	bcfg := mhaCfg
	bcfg.DType = hostcache.BFloat16
	pbf := newPool(t, bcfg)
	w := newStore(t, Config{Dir: dir, ModelName: "m"}, p16)
	i16, _ := p16.Alloc(mhaCfg.PageSize)
	fillRandom(t, p16, i16)
	if ok, err := w.BatchSetV1([]string{"k"}, i16); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	r := newStore(t, Config{Dir: dir, ModelName: "m"}, pbf)
	if r.Exists("k") {
		t.Error("Exists(k) is true for a pool that cannot load the only copy")
	}
	if !w.Exists("k") {
		t.Error("Exists(k) is false for the pool that wrote it")
	}
}

// TestOverlappingDestinations: two keys read into the same slots would leave
// one key's bytes under both reported trues, so it is a call-level error.
func TestOverlappingDestinations(t *testing.T) {
	ps := mhaCfg.PageSize
	p := newPool(t, mhaCfg)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	src, _ := p.Alloc(2 * ps)
	dst, _ := p.Alloc(ps)
	fillRandom(t, p, src)
	if ok, err := s.BatchSetV1([]string{"a", "b"}, src); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	ok, err := s.BatchGetV1([]string{"a", "b"}, append(append([]int64{}, dst...), dst...))
	if !errors.Is(err, ErrLength) || ok[0] || ok[1] {
		t.Fatalf("BatchGetV1 into shared slots = %v, %v; want ErrLength, all false", ok, err)
	}
}
