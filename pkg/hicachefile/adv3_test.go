package hicachefile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// Adversarial tests of unnamed batch writes: a store without MaxBytes or
// MinFreeBytes writes a batch file into a file made with O_TMPFILE, which
// has no name, and links it under its final name once complete.

// TestAdv3NoFDLeakOnFault fails each successive system call of a
// BatchSetV1 that spans four batch files, written with no name, until the
// call succeeds: no failing run may leave a descriptor open (an unnamed
// file left open is also its disk space, held until the process exits).
// A failed link of one file used to leave the files after it, written but
// never linked, open: the cleanup of the later chunks only looked for temp
// files with a name.
func TestAdv3NoFDLeakOnFault(t *testing.T) {
	for _, workers := range []int{1, 2} {
		for _, sync := range []bool{false, true} {
			t.Run(fmt.Sprintf("IOWorkers=%d/Sync=%v", workers, sync), func(t *testing.T) {
				const keysN, perFile = 10, 3
				_, p, keys, src, _ := faultFixture(t, keysN)
				base := shmDir(t) // fsync costs nothing on tmpfs
				for n := int64(1); ; n++ {
					dir := filepath.Join(base, strconv.Itoa(int(n)))
					f := &faults{n: n}
					before := openFDs(t)
					s, err := New(Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(perFile * p.PageBytes()),
						IOWorkers: workers, Sync: sync, Syscalls: f.syscalls()})
					if err != nil {
						if !f.hit() {
							t.Fatal(err)
						}
						continue // a fault in New itself
					}
					if err := s.RegisterMemPoolHost(p); err != nil {
						t.Fatal(err)
					}
					if !s.unnamedWrites() {
						t.Fatal("a store without a bound does not write with no name")
					}
					_, err = s.BatchSetV1(keys, src)
					_ = s.Close()
					if after := openFDs(t); after != before {
						t.Fatalf("call %d (err %v): %d descriptors open before the store, %d after its Close", n, err, before, after)
					}
					if !f.hit() {
						if err != nil {
							t.Fatal(err)
						}
						return
					}
					if err != nil && !errors.Is(err, unix.EIO) {
						t.Fatalf("call %d: err = %v, want the injected EIO", n, err)
					}
				}
			})
		}
	}
}

// TestAdv3NameTakenThrice: every final name the store draws is taken
// (someone links a file under each first): after three tries the call
// fails, with the unnamed file closed, no name left expected by the
// watcher, no commit left in flight and nothing on disk.
func TestAdv3NameTakenThrice(t *testing.T) {
	p, idx := randomPages(t, 1)
	dir := shmDir(t)
	tries := 0
	sys := Syscalls{Linkat: func(od int, op string, nd int, np string, fl int) error {
		if strings.HasSuffix(np, batchExt) {
			tries++
			return unix.EEXIST
		}
		return unix.Linkat(od, op, nd, np, fl)
	}}
	before := openFDs(t)
	s, err := New(Config{Dir: dir, ModelName: "m", Syscalls: sys})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterMemPoolHost(p); err != nil {
		t.Fatal(err)
	}
	during := openFDs(t)
	ok, err := s.BatchSetV1([]string{"k"}, idx)
	if err == nil || ok[0] || tries != 3 {
		t.Errorf("BatchSetV1 with every name taken = %v, %v after %d links; want an error after 3", ok, err, tries)
	}
	if n := openFDs(t); n != during {
		t.Errorf("%d descriptors open after the failed call, %d before", n, during)
	}
	if own, names := inflightLen(s); own != 0 || names != 0 {
		t.Errorf("%d names expected by the watcher, %d commits in flight after the call; want 0, 0", own, names)
	}
	if s.Exists("k") || batchFileCount(t, s) != 0 {
		t.Error("a key whose every link failed is stored")
	}
	_ = s.Close()
	if n := openFDs(t); n != before {
		t.Errorf("%d descriptors open after Close, %d before New", n, before)
	}
}

// TestAdv3SyncOrder: with Config.Sync, an unnamed batch file's data is
// flushed (fdatasync of the file) before the link gives it its name, and
// the directory is flushed (fsync) after the link, before the call
// returns: a crash never leaves a name on a file whose data is not on
// disk, and a call that returned true survives one.
func TestAdv3SyncOrder(t *testing.T) {
	p, idx := randomPages(t, 1)
	var log []string
	var file, v1 int
	sys := Syscalls{
		Openat: func(dirfd int, path string, flags int, mode uint32) (int, error) {
			fd, err := unix.Openat(dirfd, path, flags, mode)
			if err == nil && flags&unix.O_TMPFILE == unix.O_TMPFILE {
				file, v1 = fd, dirfd
				log = append(log, "open")
			}
			return fd, err
		},
		Fdatasync: func(fd int) error {
			if fd == file {
				log = append(log, "fdatasync file")
			}
			return unix.Fdatasync(fd)
		},
		Linkat: func(od int, op string, nd int, np string, fl int) error {
			if strings.HasSuffix(np, batchExt) {
				log = append(log, "link")
			}
			return unix.Linkat(od, op, nd, np, fl)
		},
		Fsync: func(fd int) error {
			if fd == v1 {
				log = append(log, "fsync dir")
			}
			return unix.Fsync(fd)
		},
		Close: func(fd int) error {
			if fd == file {
				log = append(log, "close")
			}
			return unix.Close(fd)
		},
	}
	s := newStore(t, Config{Dir: shmDir(t), ModelName: "m", Sync: true, Syscalls: sys}, p)
	if ok, err := s.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	want := "open,fdatasync file,link,fsync dir,close"
	if got := strings.Join(log, ","); got != want {
		t.Errorf("unnamed write with Sync: %s; want %s", got, want)
	}
}

// TestAdv3ForeignOverUnnamed: another rank's batch file of the same shape
// and keys, renamed or linked over one of this store's unnamed-written
// batch files, at every moment around the link and the watcher's drain of
// its event, is never served: the live store serves its own page or
// misses, and once it misses, writes the page again and serves it.
func TestAdv3ForeignOverUnnamed(t *testing.T) {
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
	sys := writeHooks{placed: func(np string) {
		if armed {
			armed = false
			over(filepath.Join(live.v1Dir, np))
			if when == "before the add, drained" {
				live.Exists("unrelated") // drains the events while the commit is in flight
			}
		}
	}}.syscalls()
	cfg := Config{Dir: dir, ModelName: "m", TPSize: 2, NoWatch: noWatch, Syscalls: sys}
	switch mode {
	case "MaxBytes":
		cfg.MaxBytes = 1 << 30
	case "no O_TMPFILE":
		cfg.Syscalls.Openat = refuseTmpfile
	}
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

// TestAdv3OwnMarksDrained: many unnamed writes from several goroutines,
// with lookups draining the watcher's events at every moment of their
// commits: once the writes are done and a lookup drained the last
// events, the store expects no event and has no commit in flight (the
// names it expects do not pile up), and every key is found.
func TestAdv3OwnMarksDrained(t *testing.T) { bothModes(t, testOwnMarksDrained) }

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

// TestAdv3OverflowLosesOwnEvent: the kernel drops the creation event of
// this store's own link (its watcher's queue is full), and the event of
// another rank's file renamed over it: the store serves its own pages or
// misses, never the other rank's, forgets the events it expected, and
// once it misses writes the page again and serves it.
func TestAdv3OverflowLosesOwnEvent(t *testing.T) {
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
	sys := Syscalls{Linkat: func(od int, op string, nd int, np string, fl int) error {
		if armed && strings.HasSuffix(np, batchExt) {
			flood(t, live.v1Dir) // the link's event is dropped
		}
		err := unix.Linkat(od, op, nd, np, fl)
		if err == nil && armed && strings.HasSuffix(np, batchExt) {
			armed = false
			if err := os.Rename(theirs.Path, filepath.Join(live.v1Dir, np)); err != nil {
				t.Fatal(err)
			}
		}
		return err
	}}
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

// TestAdv3DirReplacedDuringWrite: Dir is moved away and made again while
// a BatchSetV1 writes its unnamed file (before or after the link), and
// another call of the store may see the replacement before the write
// adds its file to the index. The write may land in the old directory,
// but then the live store must not count the key as stored: a later
// BatchSetV1 writes it again at the path Dir, where other stores find it.
func TestAdv3DirReplacedDuringWrite(t *testing.T) {
	for _, at := range []string{"fill", "place"} {
		for _, seen := range []bool{false, true} {
			for _, noWatch := range []bool{false, true} {
				for _, bounded := range []bool{false, true} {
					t.Run(fmt.Sprintf("at=%s/seen=%v/NoWatch=%v/MaxBytes=%v", at, seen, noWatch, bounded), func(t *testing.T) {
						testDirReplacedDuringWrite(t, at, seen, noWatch, bounded)
					})
				}
			}
		}
	}
}

func testDirReplacedDuringWrite(t *testing.T, at string, seen, noWatch, bounded bool) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 2)
	base := t.TempDir()
	dir := filepath.Join(base, "store")
	var live *Store
	armed := false
	replace := func() {
		if !armed {
			return
		}
		armed = false
		if err := os.Rename(dir, filepath.Join(base, "old")); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if seen {
			live.Exists("other") // another call sees the new directory
		}
	}
	sys := writeHooks{
		fill: func() {
			if at == "fill" {
				replace()
			}
		},
		placed: func(string) {
			if at == "place" {
				replace()
			}
		},
	}.syscalls()
	cfg := Config{Dir: dir, ModelName: "m", NoWatch: noWatch, Syscalls: sys}
	if bounded {
		cfg.MaxBytes = 1 << 30
	}
	live = newStore(t, cfg, p)
	live.Exists("warm")
	armed = true
	if _, err := live.BatchSetV1([]string{"k"}, idx[:ps]); err != nil {
		t.Logf("the write that overlapped the replacement failed: %v", err)
	}
	if armed {
		t.Fatal("the directory was not replaced during the write")
	}
	fresh := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	// A watching store's lookup follows the replacement (its watcher
	// tells); a polling store's follows it at its next write or miss.
	if !noWatch && live.Exists("k") && !fresh.Exists("k") {
		t.Error("the live store holds k as stored, but k is not at the path Dir")
	}
	if ok, err := live.BatchSetV1([]string{"k"}, idx[:ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if !fresh.Exists("k") {
		t.Error("k, written again after the replacement, is not at the path Dir")
	}
	dst := idx[ps:]
	if ok, err := fresh.BatchGetV1([]string{"k"}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[0]) {
		t.Errorf("another store at Dir: BatchGetV1(k) = %v, %v", ok, err)
	}
	// The event of a link into the directory replaced never comes (its
	// watch is gone): the store does not go on expecting it.
	live.Exists("drain")
	if own, names := inflightLen(live); own != 0 || names != 0 {
		t.Errorf("%d names expected by the watcher, %d commits in flight after the calls; want 0, 0", own, names)
	}
}

// TestAdv3WatchLostThenForeign: a store loses its watch (reading its
// inotify descriptor fails: here /dev/null is put in its place) and polls
// from then on, with batch files it linked while watching, whose inode it
// did not record. Another rank's file renamed over one of them must not
// count as stored: Exists is false and BatchSetV1 writes the keys again,
// before any read. (Without the inode, the polling check could not tell
// the other file, and the keys stayed "stored" until a read.)
func TestAdv3WatchLostThenForeign(t *testing.T) {
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
	if err := unix.Dup2(null, live.watch.fd); err != nil {
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

// TestAdv3ClearRacesUnnamedWrite: a Clear, this store's own or another
// process's of the same identity, runs while an unnamed batch file is
// being filled or right after its link. A page written before the Clear
// began is never served after it returns; the write that overlaps it may
// land or not, but the store never holds as stored a file that is not on
// disk, and what it serves is the page written.
func TestAdv3ClearRacesUnnamedWrite(t *testing.T) {
	for _, at := range []string{"fill", "link"} {
		for _, who := range []string{"own", "other"} {
			for _, noWatch := range []bool{false, true} {
				t.Run(fmt.Sprintf("at=%s/Clear=%s/NoWatch=%v", at, who, noWatch), func(t *testing.T) {
					testClearRacesUnnamedWrite(t, at, who, noWatch)
				})
			}
		}
	}
}

func testClearRacesUnnamedWrite(t *testing.T, at, who string, noWatch bool) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 4)
	dir := t.TempDir()
	var s *Store
	other := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
	armed := false
	cleared := make(chan error, 1)
	clearNow := func() {
		if !armed {
			return
		}
		armed = false
		if who == "other" {
			cleared <- other.Clear()
			return
		}
		if at == "fill" {
			cleared <- s.Clear() // no lock of the write is held while it fills
			return
		}
		// The commit holds commitMu shared: the Clear waits for its add.
		go func() { cleared <- s.Clear() }()
		time.Sleep(20 * time.Millisecond)
	}
	sys := writeHooks{
		fill: func() {
			if at == "fill" {
				clearNow()
			}
		},
		placed: func(string) {
			if at == "link" {
				clearNow()
			}
		},
	}.syscalls()
	s = newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, Syscalls: sys}, p)
	if ok, err := s.BatchSetV1([]string{"k1"}, idx[:ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	armed = true
	ok2, err2 := s.BatchSetV1([]string{"k2"}, idx[ps:2*ps])
	if err := <-cleared; err != nil {
		t.Fatal(err)
	}
	fresh := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	dst := idx[2*ps:]
	for _, st := range []*Store{s, other, fresh} {
		zeroPages(t, p, dst)
		ok, err := st.BatchGetV1([]string{"k1", "k2"}, dst)
		if err != nil {
			t.Fatal(err)
		}
		if ok[0] {
			t.Error("k1, written before the Clear began, is served after it returned")
		}
		if ok[1] && !samePages(t, p, dst[ps], idx[ps]) {
			t.Error("k2 served with another page")
		}
		if st.Exists("k1") {
			t.Error("k1 exists after the Clear")
		}
	}
	if s.Exists("k2") && !fresh.Exists("k2") {
		t.Errorf("the writing store holds k2 (write: %v, %v) as stored, but its file is not on disk", ok2, err2)
	}
}

// TestAdv3ClearDuringOverflow: another process's Clear removes this
// store's batch file right after its link, while the watcher's queue is
// full (the removal's event is dropped), and another call of this store
// drains the overflow, lists the directory and finds the file gone, all
// before the commit adds the file to the index. The index must not be
// left holding the removed file.
func TestAdv3ClearDuringOverflow(t *testing.T) {
	for _, bounded := range []bool{false, true} {
		t.Run(fmt.Sprintf("MaxBytes=%v", bounded), func(t *testing.T) { testClearDuringOverflow(t, bounded) })
	}
}

func testClearDuringOverflow(t *testing.T, bounded bool) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 2)
	dir := shmDir(t)
	other := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: true}, p)
	var s *Store
	armed := false
	sys := writeHooks{placed: func(string) {
		if armed {
			armed = false
			flood(t, s.v1Dir)
			if err := other.Clear(); err != nil {
				t.Fatal(err)
			}
			s.Exists("other") // drains the overflow: a listing
		}
	}}.syscalls()
	cfg := Config{Dir: dir, ModelName: "m", Syscalls: sys}
	if bounded {
		cfg.MaxBytes = 1 << 30
	}
	s = newStore(t, cfg, p)
	s.Exists("warm")
	listings := s.Stats().Listings
	armed = true
	if ok, err := s.BatchSetV1([]string{"k"}, idx[:ps]); err != nil || !ok[0] {
		t.Logf("the write that overlapped the Clear: %v, %v", ok, err)
	}
	if s.Stats().Listings == listings {
		t.Fatal("no overflow: the store did not list its directory again")
	}
	if s.Exists("k") {
		t.Error("the store holds k as stored after another process's Clear removed its file")
	}
}

// TestAdv3LinkErrorsNoFDLeak: the n-th link of a BatchSetV1 that spans
// four unnamed batch files fails with each error a link can return: a
// name taken (drawn again), links refused (written again under a temp
// name), the directory gone, or an I/O error. Every run leaves no
// descriptor open, and the keys it reports stored are found by another
// store.
func TestAdv3LinkErrorsNoFDLeak(t *testing.T) {
	for _, errno := range []unix.Errno{unix.EEXIST, unix.EPERM, unix.EINVAL, unix.EOPNOTSUPP, unix.ENOENT, unix.EIO} {
		t.Run(errno.Error(), func(t *testing.T) {
			const keysN, perFile = 10, 3
			_, p, keys, src, _ := faultFixture(t, keysN)
			base := shmDir(t)
			for n := 1; n <= 8; n++ {
				dir := filepath.Join(base, strconv.Itoa(n))
				links := 0
				sys := Syscalls{Linkat: func(od int, op string, nd int, np string, fl int) error {
					if links++; links == n {
						return errno
					}
					return unix.Linkat(od, op, nd, np, fl)
				}}
				before := openFDs(t)
				s, err := New(Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(perFile * p.PageBytes()),
					IOWorkers: 2, Syscalls: sys})
				if err != nil {
					t.Fatal(err)
				}
				if err := s.RegisterMemPoolHost(p); err != nil {
					t.Fatal(err)
				}
				ok, err := s.BatchSetV1(keys, src)
				_ = s.Close()
				if after := openFDs(t); after != before {
					t.Fatalf("link %d fails (BatchSetV1 err %v): %d descriptors open before the store, %d after its Close", n, err, before, after)
				}
				stored := 0
				for stored < keysN && ok[stored] {
					stored++
				}
				clean := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
				if got := clean.BatchExists(keys); got != stored {
					t.Fatalf("link %d fails: %d keys reported stored, %d found", n, stored, got)
				}
				if left := tempFiles(t, dir); len(left) > 0 {
					t.Fatalf("link %d fails: temp files left: %v", n, left)
				}
			}
		})
	}
}

// stormRound is one round of a storm's actor w: it stores the keys q from
// the slots si, Clears every tenth round when it is actor 1, reads q back
// into dst, and checks each page served against the slot want(j) of the
// page q[j] was written from, counting it in hits. A write error that
// setOK allows is not a failure. It reports false once it has failed.
func stormRound(t *testing.T, p *hostcache.Pool, s *Store, w, it int, q []string, si, dst []int64, want func(j int) int64,
	setOK func(error) bool, fail func(string, ...any), hits *atomic.Int64) bool {
	ps := p.Config().PageSize
	if _, err := s.BatchSetV1(q, si); err != nil && (setOK == nil || !setOK(err)) {
		fail("actor %d: BatchSetV1: %v", w, err)
		return false
	}
	if w == 1 && it%10 == 9 {
		if err := s.Clear(); err != nil {
			fail("actor %d: Clear: %v", w, err)
			return false
		}
	}
	ok, err := s.BatchGetV1(q, dst[:len(q)*ps])
	if err != nil {
		fail("actor %d: BatchGetV1: %v", w, err)
		return false
	}
	for j := range q {
		if ok[j] {
			hits.Add(1)
			if !samePages(t, p, dst[j*ps], want(j)) {
				fail("actor %d: key %s: another identity's or a wrong page", w, q[j])
			}
		}
	}
	return true
}

// TestAdv3UnnamedStorm: stores without a bound (unnamed writes) of two
// identities, two of one of them, one watching and one polling, write the
// same keys with different pages on one directory, while one of them
// Clears now and then, and a hostile neighbour renames the other
// identity's batch files over this identity's and floods the watchers'
// queues. Every page served is the reader's identity's own. Once all
// stop, a last Clear leaves nothing of that identity served by any of
// its stores, and no descriptor open.
func TestAdv3UnnamedStorm(t *testing.T) {
	ps := mhaCfg.PageSize
	pc := mhaCfg
	pc.Pages = 400
	p := newPool(t, pc)
	const nk = 40
	srcA, _ := p.Alloc(nk * ps)
	srcB, _ := p.Alloc(nk * ps)
	fillRandom(t, p, srcA)
	fillRandom(t, p, srcB)
	keys := make([]string, nk)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	dir := shmDir(t)
	fds := openFDs(t)
	mk := func(model string, noWatch bool) *Store {
		s, err := New(Config{Dir: dir, ModelName: model, NoWatch: noWatch, PollInterval: 5 * time.Millisecond,
			MaxBatchFileBytes: int64(2 * p.PageBytes())})
		if err == nil {
			err = s.RegisterMemPoolHost(p)
		}
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	type actor struct {
		s   *Store
		src []int64
	}
	actors := []actor{{mk("a", false), srcA}, {mk("a", true), srcA}, {mk("b", false), srcB}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var hits, renames atomic.Int64
	fail := func(f string, a ...any) { mu.Lock(); t.Errorf(f, a...); mu.Unlock() }
	deadline := time.Now().Add(time.Second)
	for w, a := range actors {
		dst, err := p.Alloc(nk * ps)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 11))
			for it := 0; time.Now().Before(deadline); it++ {
				n := 1 + r.IntN(8)
				first := r.IntN(nk - n + 1)
				q := keys[first : first+n]
				si := a.src[first*ps : (first+n)*ps]
				want := func(j int) int64 { return a.src[(first+j)*ps] }
				if !stormRound(t, p, a.s, w, it, q, si, dst, want, nil, fail, &hits) {
					return
				}
			}
		})
	}
	wg.Go(func() { // the hostile neighbour
		r := rand.New(rand.NewPCG(99, 11))
		a, b := actors[0].s, actors[2].s
		for it := 0; time.Now().Before(deadline); it++ {
			if it%50 == 49 {
				flood(t, a.v1Dir)
			}
			var from, to []string
			theirs, _ := os.ReadDir(b.v1Dir)
			for _, e := range theirs {
				if b.isBatchName(e.Name()) {
					from = append(from, e.Name())
				}
			}
			ours, _ := os.ReadDir(a.v1Dir)
			for _, e := range ours {
				if a.isBatchName(e.Name()) {
					to = append(to, e.Name())
				}
			}
			if len(from) > 0 && len(to) > 0 &&
				os.Rename(filepath.Join(b.v1Dir, from[r.IntN(len(from))]), filepath.Join(a.v1Dir, to[r.IntN(len(to))])) == nil {
				renames.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	if hits.Load() == 0 || renames.Load() == 0 {
		t.Errorf("%d read hits, %d files renamed over: the storm tested nothing", hits.Load(), renames.Load())
	}
	t.Logf("%d read hits, %d files renamed over, %d mismatches seen", hits.Load(), renames.Load(),
		actors[0].s.Stats().Mismatch+actors[1].s.Stats().Mismatch)
	if err := actors[0].s.Clear(); err != nil {
		t.Fatal(err)
	}
	for w, a := range actors[:2] {
		dst, _ := p.Alloc(nk * ps)
		ok, err := a.s.BatchGetV1(keys, dst)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(ok, true) {
			t.Errorf("actor %d: a key served after the last Clear: %v", w, ok)
		}
		if n := a.s.BatchExists(keys[:1]); n != 0 {
			t.Errorf("actor %d: k0 exists after the last Clear", w)
		}
		_ = p.Free(dst)
	}
	for _, a := range actors {
		if own, names := inflightLen(a.s); names != 0 || own > nk {
			t.Errorf("%d names expected by the watcher, %d commits in flight after the storm", own, names)
		}
		_ = a.s.Close()
	}
	if n := openFDs(t); n != fds {
		t.Errorf("%d descriptors open after the storm and Close, %d before", n, fds)
	}
}

// TestAdv3EmptyPathKeptAfterDirGone: the V1 directory removed while a
// batch file is written makes its link fail (ENOENT, both ways); that is
// not a refusal of linkat with AT_EMPTY_PATH, which later links, in the
// directory made again, go on using instead of /proc/self/fd.
func TestAdv3EmptyPathKeptAfterDirGone(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 2)
	var s *Store
	armed := false
	emptyPath, proc := 0, 0
	sys := Syscalls{
		Pwritev: func(fd int, iovs [][]byte, off int64) (int, error) {
			if armed {
				armed = false
				if err := os.RemoveAll(s.v1Dir); err != nil {
					t.Fatal(err)
				}
			}
			return pwritevRaw(fd, iovs, off)
		},
		Linkat: func(od int, op string, nd int, np string, fl int) error {
			if fl&unix.AT_EMPTY_PATH != 0 {
				emptyPath++
			} else {
				proc++
			}
			return unix.Linkat(od, op, nd, np, fl)
		},
	}
	s = newStore(t, Config{Dir: shmDir(t), ModelName: "m", Syscalls: sys}, p)
	armed = true
	if ok, err := s.BatchSetV1([]string{"k0"}, idx[:ps]); err == nil && ok[0] {
		t.Log("the write into the removed directory reported stored")
	}
	emptyPath, proc = 0, 0
	if ok, err := s.BatchSetV1([]string{"k1"}, idx[ps:]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if emptyPath != 1 || proc != 0 {
		t.Errorf("after the directory came back: %d links with AT_EMPTY_PATH, %d through /proc; want 1, 0", emptyPath, proc)
	}
}

// TestAdv3CopiedInCountedOnce: a batch file copied into the V1 directory
// in place (cp: create, write, close) raises a creation event, as an
// unnamed file's link does, and then a close. A good file copied in while
// the store drains its events between the create and the last write is
// served, and not counted as skipped; a bad one is counted once.
func TestAdv3CopiedInCountedOnce(t *testing.T) {
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

// TestAdv3InPlaceFlipReadOnce: a payload byte of this store's own batch
// file, written with no name (so with no inode recorded), flipped in place
// (the spec "Corruption a flipped payload byte" does it with
// os.WriteFile): the bad page is read, counted corrupt and dropped once;
// the in-place write's close event must not load the file again, which
// brought the dropped entry back to be read, and counted, a second time
// in the same call.
func TestAdv3InPlaceFlipReadOnce(t *testing.T) {
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
