//go:build linux

package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hicache-go/hicache/pkg/hostcache"

	"golang.org/x/sys/unix"
)

// TestOwnEventMarksDrained: many unnamed writes from several goroutines,
// with lookups draining the watcher's events at every moment of their
// commits: once the writes are done and a lookup drained the last
// events, the store expects no event and has no commit in flight (the
// names it expects do not pile up), and every key is found.
func TestOwnEventMarksDrained(t *testing.T) { bothModes(t, testOwnMarksDrained) }

func testOwnMarksDrained(t *testing.T, noWatch bool) {
	const writers, perWriter = 4, 50
	p, idx := randomPages(t, writers)
	ps := mhaCfg.PageSize
	s := newStore(t, Config{Dir: shmDir(t), ModelName: "m", NoWatch: noWatch}, p)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				k := fmt.Sprintf("w%d-%d", w, i)
				if ok, err := s.BatchSetV1([]string{k}, idx[w*ps:(w+1)*ps]); err != nil || !ok[0] {
					t.Errorf("BatchSetV1(%s) = %v, %v", k, ok, err)
					return
				}
				s.Exists("drain")
			}
		})
	}
	wg.Wait()
	s.Exists("drain")
	if own, names := inflightLen(s); own != 0 || names != 0 {
		t.Errorf("%d names expected by the watcher, %d commits in flight after the writes and a drain; want 0, 0", own, names)
	}
	keys := make([]string, 0, writers*perWriter)
	for w := range writers {
		for i := range perWriter {
			keys = append(keys, fmt.Sprintf("w%d-%d", w, i))
		}
	}
	if n := s.BatchExists(keys); n != len(keys) {
		t.Errorf("BatchExists = %d of %d keys written", n, len(keys))
	}
}

// TestWatchOverflowNeverServesForeign: the kernel drops the creation event of
// this store's own link (its watcher's queue is full), and the event of
// another rank's file renamed over it: the store serves its own pages or
// misses, never the other rank's, forgets the events it expected, and
// once it misses writes the page again and serves it.
func TestWatchOverflowNeverServesForeign(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 8)
	dir := shmDir(t)
	keys := []string{"a", "b"}
	o := newStore(t, Config{Dir: dir, ModelName: "m", TPRank: 1, TPSize: 2}, p)
	if ok, err := o.BatchSetV1(keys, idx[2*ps:4*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	theirs, _ := o.Locate("a")
	var live *Store
	armed := false
	sys := newErrorFS().
		before(opLinkat, func(c *sysCall) {
			if armed && strings.HasSuffix(c.path, batchExt) {
				flood(t, live.v1Dir) // the link's event is dropped
			}
		}).
		after(opLinkat, func(c *sysCall, err error) {
			if err == nil && armed && strings.HasSuffix(c.path, batchExt) {
				armed = false
				if err := os.Rename(theirs.Path, filepath.Join(live.v1Dir, c.path)); err != nil {
					t.Fatal(err)
				}
			}
		}).syscalls()
	live = newStore(t, Config{Dir: dir, ModelName: "m", TPSize: 2, Syscalls: sys}, p)
	if live.watch == nil || live.poll.Load() {
		t.Fatal("the store does not watch its directory")
	}
	if ok, err := live.BatchSetV1([]string{"c"}, idx[4*ps:5*ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	live.Exists("warm")
	listings := live.Stats().Listings
	armed = true
	if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	live.Exists("drain")
	if live.Stats().Listings == listings {
		t.Fatal("no overflow: the store did not list its directory again")
	}
	all3 := []string{"a", "b", "c"}
	src := append(append([]int64{}, idx[:2*ps]...), idx[4*ps:5*ps]...)
	dst := idx[5*ps:]
	for round := range 2 {
		zeroPages(t, p, dst)
		ok, err := live.BatchGetV1(all3, dst)
		if err != nil {
			t.Fatal(err)
		}
		for i := range all3 {
			if ok[i] && !samePages(t, p, dst[i*ps], src[i*ps]) {
				t.Fatalf("round %d: served a page of %s that is not its own", round, all3[i])
			}
		}
		if !ok[2] {
			t.Errorf("round %d: c, written before the overflow, missed", round)
		}
		if round == 1 {
			if !all(ok) {
				t.Errorf("after writing again, BatchGetV1 = %v", ok)
			}
			break
		}
		if ok[0] || ok[1] {
			t.Fatal("the live store served keys from a file the other rank's replaced")
		}
		if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
	}
	live.Exists("drain")
	if own, _ := inflightLen(live); own != 0 {
		t.Errorf("%d names still expected by the watcher after an overflow and a drain", own)
	}
}

// TestWatchLostThenForeignNotStored: a store loses its watch (reading its
// inotify descriptor fails: here /dev/null is put in its place) and polls
// from then on, with batch files it linked while watching, whose inode it
// did not record. Another rank's file renamed over one of them must not
// count as stored: Exists is false and BatchSetV1 writes the keys again,
// before any read. (Without the inode, the polling check could not tell
// the other file, and the keys stayed "stored" until a read.)
func TestWatchLostThenForeignNotStored(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 6)
	dir := t.TempDir()
	keys := []string{"a", "b"}
	o := newStore(t, Config{Dir: dir, ModelName: "m", TPRank: 1, TPSize: 2}, p)
	if ok, err := o.BatchSetV1(keys, idx[2*ps:4*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	theirs, _ := o.Locate("a")
	live := newStore(t, Config{Dir: dir, ModelName: "m", TPSize: 2}, p)
	if live.watch == nil || live.poll.Load() {
		t.Fatal("the store does not watch its directory")
	}
	live.Exists("warm")
	if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup2(null, live.watch.FD()); err != nil {
		t.Fatal(err)
	}
	_ = unix.Close(null)
	live.Exists("lose") // the read returns 0 bytes: the watch is lost
	if live.watch != nil || !live.poll.Load() {
		t.Fatal("the store did not turn to polling")
	}
	mine, _ := live.Locate("a")
	if err := os.Rename(theirs.Path, mine.Path); err != nil {
		t.Fatal(err)
	}
	if live.Exists("a") {
		t.Error("Exists(a) over another rank's file, in a store that polls")
	}
	before := live.Stats().Sets
	if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
		t.Fatal(ok, err)
	}
	if live.Stats().Sets == before {
		t.Error("BatchSetV1 skipped keys held only by another rank's file")
	}
	dst := idx[4*ps:]
	if ok, err := live.BatchGetV1(keys, dst); err != nil || !all(ok) || !samePages(t, p, dst[0], idx[0]) || !samePages(t, p, dst[ps], idx[ps]) {
		t.Errorf("BatchGetV1 after writing again = %v, %v", ok, err)
	}
}

// TestCopiedInFileCountedOnce: a batch file copied into the V1 directory
// in place (cp: create, write, close) raises a creation event, as an
// unnamed file's link does, and then a close. A good file copied in while
// the store drains its events between the create and the last write is
// served, and not counted as skipped; a bad one is counted once.
func TestCopiedInFileCountedOnce(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 2)
	w := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p) // the same identity, elsewhere
	if ok, err := w.BatchSetV1([]string{"k"}, idx[:ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	loc, _ := w.Locate("k")
	good, err := os.ReadFile(loc.Path)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	s.Exists("warm")
	copyIn := func(data []byte) {
		f, err := os.OpenFile(filepath.Join(s.v1Dir, s.batchName()), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data[:len(data)/2]); err != nil {
			t.Fatal(err)
		}
		s.Exists("drain") // mid-copy
		if _, err := f.Write(data[len(data)/2:]); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		s.Exists("drain")
	}
	copyIn(good)
	dst := idx[ps:]
	if ok, err := s.BatchGetV1([]string{"k"}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[0]) {
		t.Errorf("BatchGetV1(k) from the copied-in file = %v, %v", ok, err)
	}
	if n := s.Stats().SkippedFiles; n != 0 {
		t.Errorf("Stats.SkippedFiles = %d after a good file was copied in, want 0", n)
	}
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] ^= 0xff // the trailer's checksum
	copyIn(bad)
	if n := s.Stats().SkippedFiles; n != 1 {
		t.Errorf("Stats.SkippedFiles = %d after a bad file was copied in, want 1", n)
	}
}

// TestClearBeforeOwnAddLeavesKeyUnstored: another store's Clear removes
// this store's batch file right after it gets its name, and a lookup
// drains the removal before the write adds the file to the index: the
// key is not stored (Exists is false), and the next BatchSetV1 writes it
// again rather than skipping it.
func TestClearBeforeOwnAddLeavesKeyUnstored(t *testing.T) { bothModes(t, testClearBeforeOwnAdd) }

func testClearBeforeOwnAdd(t *testing.T, noWatch bool) {
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

// TestPollingFindsOwnPoolsCopyWrittenLater: a polling store that has
// listed only another pool's copy of a key (another dtype) counts that as
// a miss, lists the directory again, and finds the copy this pool can
// load that another process wrote later.
func TestPollingFindsOwnPoolsCopyWrittenLater(t *testing.T) {
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

// TestPollingSeesFileGoneUnderStaleMtime: a polling store whose lookup
// finds a batch file gone drops its entries even when the directory's
// mtime looks unchanged (an NFS attribute cache or coarse server
// timestamps, simulated with Chtimes): Exists is false and BatchSetV1
// writes the key again.
func TestPollingSeesFileGoneUnderStaleMtime(t *testing.T) {
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

// TestPollIntervalListsUnderStaleMtime: a polling store whose V1 directory's
// mtime does not change (as a network client's attribute cache shows it)
// finds another store's batch file by listing once PollInterval has passed,
// never before, and callers that miss at once share one listing; with a
// negative PollInterval it lists only on an mtime change.
func TestPollIntervalListsUnderStaleMtime(t *testing.T) {
	for _, tc := range []struct {
		name string
		iv   time.Duration
		due  bool // the last listing is made older than iv
		want bool
	}{
		{"mtime only", -1, true, false},
		{"not due", time.Hour, false, false},
		{"due", time.Hour, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, idx := randomPages(t, 1)
			dir := t.TempDir()
			b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true, PollInterval: tc.iv}, p)
			var before unix.Stat_t
			if err := unix.Stat(b.v1Dir, &before); err != nil {
				t.Fatal(err)
			}
			a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true}, p)
			if ok, err := a.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
			// The mtime b saw at its last listing, as a stale attribute cache shows it.
			if err := unix.UtimesNano(b.v1Dir, []unix.Timespec{before.Atim, before.Mtim}); err != nil {
				t.Fatal(err)
			}
			if tc.due {
				b.scan.mu.Lock()
				b.scan.at = b.scan.at.Add(-2 * time.Hour)
				b.scan.mu.Unlock()
			}
			listings := b.Stats().Listings
			var wg sync.WaitGroup
			got := make([]bool, 8)
			for i := range got {
				wg.Go(func() { got[i] = b.Exists("k") })
			}
			wg.Wait()
			n := b.Stats().Listings - listings
			for i, g := range got {
				if g != tc.want {
					t.Errorf("caller %d: Exists(k) = %v, want %v", i, g, tc.want)
				}
			}
			if want := map[bool]int64{true: 1, false: 0}[tc.want]; n != want {
				t.Errorf("%d listings for 8 concurrent misses, want %d", n, want)
			}
		})
	}
}
