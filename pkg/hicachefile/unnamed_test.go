//go:build linux

package hicachefile

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestUnnamedWrite: a store without a bound writes a batch file into a
// file with no name and links it under its final name once complete: the
// floor's four system calls (openat, pwritev, linkat, close), no temp file
// on disk at any moment, and another store that watches the directory
// finds the file through its creation event, without a listing.
func TestUnnamedWrite(t *testing.T) {
	p, idx := randomPages(t, 1)
	dir := t.TempDir()
	b := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	var a *Store
	calls := newErrorFS().counting(opAll&^opFstatfs).before(opPwritev, func(*sysCall) {
		if temps := tempsIn(t, a); len(temps) > 0 {
			t.Errorf("temp files while a batch file is written: %v", temps)
		}
	})
	a = newStore(t, Config{Dir: dir, ModelName: "m", Syscalls: calls.syscalls()}, p)
	b.Exists("warm") // b has listed once, and follows events from now on
	listings := b.Stats().Listings
	c0 := calls.count(opAll &^ opFstatfs)
	if ok, err := a.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if n := calls.count(opAll&^opFstatfs) - c0; n != 4 {
		t.Errorf("a one-file BatchSetV1 made %d system calls through Syscalls, want 4 (openat, pwritev, linkat, close)", n)
	}
	if !b.Exists("k") {
		t.Error("another store does not see the linked batch file")
	}
	// Without inotify (a polling store) a listing is how it finds it.
	if n := b.Stats().Listings - listings; n != 0 && !b.poll.Load() {
		t.Errorf("the other store listed the directory %d times to find it, want 0 (the creation event tells)", n)
	}
	dst, _ := p.Alloc(mhaCfg.PageSize)
	if ok, err := b.BatchGetV1([]string{"k"}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[0]) {
		t.Errorf("BatchGetV1(k) from the other store = %v, %v", ok, err)
	}
	if left := tempsIn(t, a); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestUnnamedLinkFallbacks: where linkat with AT_EMPTY_PATH is refused
// (Linux before 6.10, without privilege), the link goes through
// /proc/self/fd, and only that way from then on; where every link of an
// unnamed file is refused, the file is written again under a temp name;
// and a final name that someone took meanwhile is drawn again.
func TestUnnamedLinkFallbacks(t *testing.T) {
	for _, how := range []string{"empty path refused", "links refused", "name taken"} {
		t.Run(how, func(t *testing.T) {
			p, idx := randomPages(t, 2)
			dir := t.TempDir()
			var emptyPath, proc int
			fs := newErrorFS().counting(opRenameat).before(opLinkat, func(c *sysCall) {
				if c.flags&unix.AT_EMPTY_PATH != 0 {
					emptyPath++
				} else {
					proc++
				}
			})
			switch how {
			case "empty path refused":
				fs.fail(opLinkat, withFlags(unix.AT_EMPTY_PATH), unix.ENOENT)
			case "links refused":
				fs.fail(opLinkat, nil, unix.EPERM)
			case "name taken":
				taken := false
				fs.before(opLinkat, func(c *sysCall) {
					if !taken {
						taken = true
						if err := os.WriteFile("/proc/self/fd/"+strconv.Itoa(c.fd)+"/"+c.path, []byte("someone else's"), 0o644); err != nil {
							t.Fatal(err)
						}
					}
				})
			}
			s := newStore(t, Config{Dir: dir, ModelName: "m", Syscalls: fs.syscalls()}, p)
			renames := func() int64 { return fs.count(opRenameat) }
			ps := mhaCfg.PageSize
			for i, k := range []string{"k0", "k1"} {
				if ok, err := s.BatchSetV1([]string{k}, idx[i*ps:(i+1)*ps]); err != nil || !ok[0] {
					t.Fatal(k, ok, err)
				}
			}
			switch how {
			case "empty path refused":
				if emptyPath != 1 || proc != 2 || renames() != 0 {
					t.Errorf("%d AT_EMPTY_PATH links, %d through /proc, %d renames; want 1, 2, 0", emptyPath, proc, renames())
				}
			case "links refused":
				if renames() != 2 || tmpfile(s.tmpfile.Load()) != tmpfileNo {
					t.Errorf("%d renames, tmpfile %d; want both batch files renamed from temp files, O_TMPFILE off", renames(), s.tmpfile.Load())
				}
			case "name taken":
				if emptyPath != 3 || renames() != 0 {
					t.Errorf("%d links, %d renames; want 3 (one to a taken name) and 0", emptyPath, renames())
				}
				n := 0
				ents, _ := os.ReadDir(s.v1Dir)
				for _, e := range ents {
					if strings.HasSuffix(e.Name(), batchExt) {
						n++
					}
				}
				if n != 3 {
					t.Errorf("%d batch-named files, want 3 (two of ours and the one that took a name)", n)
				}
			}
			for i, k := range []string{"k0", "k1"} {
				dst, _ := p.Alloc(ps)
				if ok, err := s.BatchGetV1([]string{k}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[i*ps]) {
					t.Errorf("BatchGetV1(%s) = %v, %v", k, ok, err)
				}
			}
			if left := tempsIn(t, s); len(left) > 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

// TestNameTakenThriceFailsCleanly: every final name the store draws is taken
// (someone links a file under each first): after three tries the call
// fails, with the unnamed file closed, no name left expected by the
// watcher, no commit left in flight and nothing on disk.
func TestNameTakenThriceFailsCleanly(t *testing.T) {
	p, idx := randomPages(t, 1)
	dir := shmDir(t)
	fs := newErrorFS().fail(opLinkat, pathSuffix(batchExt), unix.EEXIST) // every final name taken
	before := openFDs(t)
	s, err := New(Config{Dir: dir, ModelName: "m", Syscalls: fs.syscalls()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterMemPoolHost(p); err != nil {
		t.Fatal(err)
	}
	during := openFDs(t)
	ok, err := s.BatchSetV1([]string{"k"}, idx)
	if tries := fs.fired(); err == nil || ok[0] || tries != 3 {
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

// TestSyncFlushesDataBeforeLinkAndDirAfter: with Config.Sync, an unnamed batch file's data is
// flushed (fdatasync of the file) before the link gives it its name, and
// the directory is flushed (fsync) after the link, before the call
// returns: a crash never leaves a name on a file whose data is not on
// disk, and a call that returned true survives one.
func TestSyncFlushesDataBeforeLinkAndDirAfter(t *testing.T) {
	p, idx := randomPages(t, 1)
	var log []string
	var file, v1 int
	// logAt logs what when the call's descriptor is *fd.
	logAt := func(fd *int, what string) func(c *sysCall) {
		return func(c *sysCall) {
			if c.fd == *fd {
				log = append(log, what)
			}
		}
	}
	fs := newErrorFS().
		after(opOpenat, func(c *sysCall, err error) {
			if err == nil && c.flags&unix.O_TMPFILE == unix.O_TMPFILE {
				file, v1 = c.ret, c.fd
				log = append(log, "open")
			}
		}).
		before(opFdatasync, logAt(&file, "fdatasync file")).
		before(opLinkat, func(c *sysCall) {
			if strings.HasSuffix(c.path, batchExt) {
				log = append(log, "link")
			}
		}).
		before(opFsync, logAt(&v1, "fsync dir")).
		before(opClose, logAt(&file, "close"))
	s := newStore(t, Config{Dir: shmDir(t), ModelName: "m", Sync: true, Syscalls: fs.syscalls()}, p)
	if ok, err := s.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	want := "open,fdatasync file,link,fsync dir,close"
	if got := strings.Join(log, ","); got != want {
		t.Errorf("unnamed write with Sync: %s; want %s", got, want)
	}
}

// TestEmptyPathLinkKeptAfterDirGone: the V1 directory removed while a
// batch file is written makes its link fail (ENOENT, both ways); that is
// not a refusal of linkat with AT_EMPTY_PATH, which later links, in the
// directory made again, go on using instead of /proc/self/fd.
func TestEmptyPathLinkKeptAfterDirGone(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 2)
	var s *Store
	armed := false
	emptyPath, proc := 0, 0
	sys := newErrorFS().
		before(opPwritev, func(*sysCall) {
			if armed {
				armed = false
				if err := os.RemoveAll(s.v1Dir); err != nil {
					t.Fatal(err)
				}
			}
		}).
		before(opLinkat, func(c *sysCall) {
			if c.flags&unix.AT_EMPTY_PATH != 0 {
				emptyPath++
			} else {
				proc++
			}
		}).syscalls()
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
