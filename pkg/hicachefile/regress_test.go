package hicachefile

import (
	"bytes"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// onDisk reports whether a fresh store on dir finds key in V1.
func onDisk(t *testing.T, dir string, p *hostcache.Pool, key string) bool {
	t.Helper()
	s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true}, p)
	_, ok := s.Locate(key)
	return ok
}

// TestTakeBackWindow: chunks after a failed one must never be visible, not
// even for a moment: a concurrent BatchSetV1 of one of their keys would be
// told the key exists, and the page would then be taken back.
func TestTakeBackWindow(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 3)
	dir := t.TempDir()
	var s *Store
	var innerOK []bool
	var innerErr error
	var fired atomic.Bool
	sys := Syscalls{Pwritev: func(fd int, iovs [][]byte, off int64) (int, error) {
		// chunk 0's index+trailer write: it holds key "k0" and the magic
		last := iovs[len(iovs)-1]
		if bytes.Contains(last, []byte(batchfile.Magic)) && bytes.Contains(last, []byte("k0")) && !fired.Swap(true) {
			deadline := time.Now().Add(300 * time.Millisecond)
			for { // wait until chunk 1 is in the index
				if _, ok := s.Locate("k1"); ok || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			// another goroutine of the same process stores k1 meanwhile
			innerOK, innerErr = s.BatchSetV1([]string{"k1"}, idx[2*ps:])
			return 0, unix.EIO
		}
		return unix.Pwritev(fd, iovs, off)
	}}
	s = newStore(t, Config{Dir: dir, ModelName: "m", IOWorkers: 2, MaxBatchFileBytes: int64(p.PageBytes()), Syscalls: sys}, p)
	ok, err := s.BatchSetV1([]string{"k0", "k1"}, idx[:2*ps])
	if err == nil || ok[0] || ok[1] {
		t.Fatalf("setup: outer = %v %v", ok, err)
	}
	if innerErr != nil || !innerOK[0] {
		t.Fatalf("setup: inner = %v %v", innerOK, innerErr)
	}
	if !s.Exists("k1") || !onDisk(t, dir, p, "k1") {
		t.Errorf("BatchSetV1([k1]) reported true, but k1 is not stored: Exists=%v onDisk=%v",
			s.Exists("k1"), onDisk(t, dir, p, "k1"))
	}
}

// TestAddAfterDeleteEvent: with inotify, the store's own add() can run after the DELETE event of
// the file it just renamed in was processed (another process's Clear, or this
// store's own Clear). The index then holds a dead file forever: Exists lies
// and BatchSetV1 skips the key, reporting true without writing it.
func TestAddAfterDeleteEvent(t *testing.T) { bothModes(t, testAddAfterDeleteEvent) }

func testAddAfterDeleteEvent(t *testing.T, noWatch bool) {
	p, idx := randomPages(t, 1)
	dir := t.TempDir()
	other := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p) // another process
	var a *Store
	armed := true
	// The batch file gets its name by a link (an unnamed file) or a
	// rename (a temp file): either way, the Clear comes right after.
	sys := writeHooks{placed: func(string) {
		if armed {
			armed = false
			if cerr := other.Clear(); cerr != nil {
				t.Error(cerr)
			}
			a.Exists("unrelated") // any lookup in another goroutine drains the events
		}
	}}.syscalls()
	a = newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, Syscalls: sys}, p)
	if ok, err := a.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	// The file was cleared. Reporting it gone is the correct outcome.
	if a.Exists("k") {
		t.Error("Exists(k) = true, but its only file was removed")
	}
	before := a.Stats().Sets
	if ok, err := a.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if a.Stats().Sets == before {
		t.Errorf("BatchSetV1(k) skipped the key and reported true; on disk: %v", onDisk(t, dir, p, "k"))
	}
}

// TestPollingIgnoresMismatchMiss: polling: a key found only with another pool's fingerprint is not a
// miss, so lookup never lists the directory, and a copy this pool can load,
// written later by another process, is never found.
func TestPollingIgnoresMismatchMiss(t *testing.T) {
	dir := t.TempDir()
	p16 := newPool(t, mhaCfg)
	bcfg := mhaCfg
	bcfg.DType = hostcache.BFloat16
	pbf := newPool(t, bcfg)
	i16, _ := p16.Alloc(mhaCfg.PageSize)
	ibf, _ := pbf.Alloc(mhaCfg.PageSize)
	fillRandom(t, p16, i16)
	fillRandom(t, pbf, ibf)
	w16 := newStore(t, Config{Dir: dir, ModelName: "m"}, p16)
	if ok, err := w16.BatchSetV1([]string{"k"}, i16); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	r := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true}, pbf) // lists: k with fp16 only
	wbf := newStore(t, Config{Dir: dir, ModelName: "m"}, pbf)
	if ok, err := wbf.BatchSetV1([]string{"k"}, ibf); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if !r.Exists("k") {
		t.Error("Exists(k) = false although a bfloat16 copy is on disk")
	}
	dst, _ := pbf.Alloc(mhaCfg.PageSize)
	if ok, _ := r.BatchGetV1([]string{"k"}, dst); !ok[0] {
		t.Errorf("BatchGetV1(k) = false; stats %+v", r.Stats())
	}
}

// TestPollingVerifyIgnored: polling trusts the directory mtime alone: lookup(verify) sees that a
// file is gone but keeps its entries when the mtime looks unchanged (NFS
// attribute cache / coarse server timestamps, simulated with Chtimes).
func TestPollingVerifyIgnored(t *testing.T) {
	p, idx := randomPages(t, 1)
	dir := t.TempDir()
	a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true}, p)
	if ok, err := a.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	a.Exists("nope") // a miss: a lists, records the mtime
	fi, _ := os.Stat(a.v1Dir)
	loc, _ := a.Locate("k")
	if err := os.Remove(loc.Path); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(a.v1Dir, fi.ModTime(), fi.ModTime())
	if a.Exists("k") {
		t.Error("Exists(k) = true although lookup's own fstatat found its file missing")
	}
	before := a.Stats().Sets
	if ok, _ := a.BatchSetV1([]string{"k"}, idx); ok[0] && a.Stats().Sets == before {
		t.Error("BatchSetV1(k) reported true without writing; nothing is on disk")
	}
}

// TestDirectBytesDoubleCount: DirectBytes counts a window twice when a run fails and is re-read page
// by page.
func TestDirectBytesDoubleCount(t *testing.T) {
	cfg := directCfg
	cfg.Layout = hostcache.PageFirst
	cfg.Pages = 400
	p := newPool(t, cfg)
	n := 200
	src, _ := p.Alloc(n * cfg.PageSize)
	dst, _ := p.Alloc(n * cfg.PageSize)
	fillRandom(t, p, src)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", DirectIO: true, IOWorkers: 1}, p)
	if ok, err := s.BatchSetV1(keys, src); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	loc, _ := s.Locate(keys[n-1])
	if err := os.Truncate(loc.Path, loc.Offset+loc.Length/2); err != nil {
		t.Fatal(err)
	}
	ok, _ := s.BatchGetV1(keys, dst)
	served := int64(0)
	for _, b := range ok {
		if b {
			served += int64(p.PageBytes())
		}
	}
	st := s.Stats()
	if st.DirectBytes == 0 {
		t.Logf("no direct reads: the file system of %s refuses O_DIRECT", s.Dir())
	}
	if st.DirectBytes > served {
		t.Errorf("DirectBytes = %d, but only %d bytes were read (%d pages served)", st.DirectBytes, served, served/int64(p.PageBytes()))
	}
}
