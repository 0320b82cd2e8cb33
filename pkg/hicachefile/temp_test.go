//go:build linux

package hicachefile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lockedAt reports whether another open file description is refused an
// OFD read lock on the file at path, as a reclaim would be.
func lockedAt(t *testing.T, path string) bool {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	lk := unix.Flock_t{Type: unix.F_RDLCK}
	err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &lk)
	return err == unix.EAGAIN || err == unix.EACCES
}

// TestTempNeverUnlocked: a temp file must never be on disk
// unlocked, so that a reclaim may take any temp file whose lock it gets,
// with no grace. A temp file is locked from the moment it is linked in,
// and is the only one, locked, while its write fills it (so other stores
// count its bytes toward MaxBytes), through both interfaces and for a Set
// that replaces a file of the wrong size. A store without a bound writes
// its batch files with no name at all until they are complete: nothing to
// lock, nothing for a crash to leave, and the link goes to the final name.
func TestTempNeverUnlocked(t *testing.T) {
	for _, bounded := range []bool{true, false} {
		t.Run(fmt.Sprintf("MaxBytes=%v", bounded), func(t *testing.T) { testTempNeverUnlocked(t, bounded) })
	}
}

func testTempNeverUnlocked(t *testing.T, bounded bool) {
	p, idx := randomPages(t, 1)
	dir := t.TempDir()
	var s *Store
	writes, links, published := 0, 0, 0
	v1 := false // the write in progress is BatchSetV1's
	sys := newErrorFS().
		before(opPwritev, func(*sysCall) {
			writes++
			temps := tempsIn(t, s)
			want := 1
			if v1 && !bounded {
				want = 0
			}
			if len(temps) != want {
				t.Errorf("temp files while a write fills one: %v, want %d", temps, want)
			}
			for _, path := range temps {
				if !bornLocked(filepath.Base(path)) || !lockedAt(t, path) {
					t.Errorf("temp file %s unlocked, or not marked as locked from birth, while written", path)
				}
			}
		}).
		after(opLinkat, func(c *sysCall, err error) {
			switch {
			case err != nil:
			case s.isBatchName(c.path):
				published++ // complete, under its final name
			default:
				links++
				path := "/proc/self/fd/" + strconv.Itoa(c.fd) + "/" + c.path
				if !bornLocked(c.path) || !lockedAt(t, path) {
					t.Errorf("temp file %s linked in unlocked, or not marked as locked from birth", c.path)
				}
			}
		}).syscalls()
	cfg := Config{Dir: dir, ModelName: "m", Syscalls: sys}
	if bounded {
		cfg.MaxBytes = 1 << 30
	}
	s = newStore(t, cfg, p)
	page, _ := p.GetDataPage(idx[0])
	if err := s.Set("new", page); err != nil {
		t.Fatal(err)
	}
	v1 = true
	if ok, err := s.BatchSetV1([]string{"v"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	v1 = false
	if err := os.WriteFile(s.FilePath("short"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("short", page); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(s.FilePath("short")); err != nil || !bytes.Equal(got, page) {
		t.Errorf("the wrong-sized file was not replaced: %v", err)
	}
	wantLinks, wantPublished := 3, 0
	if !bounded {
		wantLinks, wantPublished = 2, 1
	}
	if writes != 3 || links != wantLinks || published != wantPublished {
		t.Errorf("%d writes, %d temp files linked in, %d unnamed files linked to their final name; want 3, %d and %d",
			writes, links, published, wantLinks, wantPublished)
	}
	if left := tempsIn(t, s); len(left) > 0 {
		t.Errorf("temp files left: %v", left)
	}
}

// TestBornLockedTempReclaimedAtOnce: a temp file locked before it had a
// name is dead as soon as its lock can be taken, however young; a young
// temp file made by name (where O_TMPFILE is refused) keeps its grace, and
// a live one stays.
func TestBornLockedTempReclaimedAtOnce(t *testing.T) {
	dir := t.TempDir()
	s0 := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	const tok = "0123456789abcdef"
	dead := filepath.Join(dir, lockedTmpPrefix+tok+"-"+s0.digest+"_m_0_1.tmp")
	live := filepath.Join(s0.v1Dir, lockedTmpPrefix+tok+"-"+s0.digest+"_m_0_1.tmp")
	named := filepath.Join(dir, "."+tok+"-"+s0.digest+"_m_0_1.tmp")
	writeTempFile(t, dead, 100, 0, false)
	writeTempFile(t, live, 100, 0, true)
	writeTempFile(t, named, 100, 0, false)
	s := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("a dead writer's born-locked temp file survived New: %v", err)
	}
	for _, p := range []string{live, named} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("New removed %s: %v", filepath.Base(p), err)
		}
	}
	if n := s.Stats().ReclaimedTemps; n != 1 {
		t.Errorf("Stats.ReclaimedTemps = %d, want 1", n)
	}
}

// TestTmpfileRefused: where O_TMPFILE is refused, or its file cannot be
// linked, writes make their temp files by name as before, and succeed.
func TestTmpfileRefused(t *testing.T) {
	for _, how := range []string{"open", "link"} {
		t.Run(how, func(t *testing.T) {
			p, idx := randomPages(t, 1)
			var renamed []string
			fs := newErrorFS().before(opRenameat, func(c *sysCall) { renamed = append(renamed, c.old) })
			if how == "open" {
				fs.refuseTmpfile()
			} else {
				fs.fail(opLinkat, nil, unix.EPERM)
			}
			s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", Syscalls: fs.syscalls()}, p)
			page, _ := p.GetDataPage(idx[0])
			if err := s.Set("o", page); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.BatchSetV1([]string{"v"}, idx); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
			if tmpfile(s.tmpfile.Load()) != tmpfileNo {
				t.Errorf("tmpfile = %d, want O_TMPFILE off", s.tmpfile.Load())
			}
			if len(renamed) != 2 || bornLocked(renamed[0]) || bornLocked(renamed[1]) || !s.isTmpName(renamed[0]) {
				t.Errorf("renamed %v; want two temp files made by name", renamed)
			}
			got := make([]byte, len(page))
			if err := s.Get("o", got); err != nil || !bytes.Equal(got, page) {
				t.Errorf("Get(o) = %v", err)
			}
			dst, _ := p.Alloc(mhaCfg.PageSize)
			if ok, err := s.BatchGetV1([]string{"v"}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[0]) {
				t.Errorf("BatchGetV1(v) = %v, %v", ok, err)
			}
			if left := tempsIn(t, s); len(left) > 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

// TestFreshDeadTempsReclaimedAtNew: a temp file locked from birth that
// its writer left a moment ago (closed, unlocked: the writer died) goes at
// the next New, whatever its age, in Dir and in the V1 directory; a live
// writer's, locked, stays even when old.
func TestFreshDeadTempsReclaimedAtNew(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	dead := []string{
		filepath.Join(dir, lockedTmpPrefix+"0123456789abcdef-"+s.digest+s.suffix+tmpExt),
		filepath.Join(s.v1Dir, lockedTmpPrefix+"1123456789abcdef-"+s.digest+s.suffix+tmpExt),
	}
	live := []string{
		filepath.Join(dir, lockedTmpPrefix+"2123456789abcdef-"+s.digest+s.suffix+tmpExt),
		filepath.Join(s.v1Dir, lockedTmpPrefix+"3123456789abcdef-"+s.digest+s.suffix+tmpExt),
	}
	for _, path := range dead {
		writeTempFile(t, path, 4096, 0, false)
	}
	for _, path := range live {
		writeTempFile(t, path, 4096, time.Hour, true)
	}
	r := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	for _, path := range dead {
		if _, err := os.Lstat(path); err == nil {
			t.Errorf("New left the dead writer's temp file %s", path)
		}
	}
	for _, path := range live {
		if _, err := os.Lstat(path); err != nil {
			t.Errorf("New removed the live writer's temp file %s: %v", path, err)
		}
	}
	if n := r.Stats().ReclaimedTemps; n != int64(len(dead)) {
		t.Errorf("Stats.ReclaimedTemps = %d, want %d", n, len(dead))
	}
}

// TestDeadWritersTempsReclaimed: a new store removes dead (crashed)
// writers' temp files of its suffix, in Dir and in its V1 directory, and
// leaves live writers' and other suffixes'.
func TestDeadWritersTempsReclaimed(t *testing.T) {
	dir := t.TempDir()
	s0 := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	const tok = "0123456789abcdef"
	dead := []string{
		filepath.Join(dir, ".a"+tok[1:]+"-"+s0.digest+"_m_0_1.tmp"),
		filepath.Join(s0.v1Dir, ".b"+tok[1:]+"-"+s0.digest+"_m_0_1.tmp"),
		filepath.Join(dir, "abc_m_0_1.bin.tmp.4242.1398.0123456789abcdef0123456789abcdef"), // SGLang's, old
	}
	live := []string{
		filepath.Join(dir, ".c"+tok[1:]+"-"+s0.digest+"_m_0_1.tmp"),
		filepath.Join(s0.v1Dir, ".d"+tok[1:]+"-"+s0.digest+"_m_0_1.tmp"),
	}
	young := []string{
		filepath.Join(dir, "abd_m_0_1.bin.tmp.4242.1398.0123456789abcdef0123456789abcdef"), // SGLang's, being written
	}
	others := []string{filepath.Join(dir, ".f"+tok[1:]+"_x_m_0_1.tmp")} // another model's
	for _, p := range dead {
		writeTempFile(t, p, 100, time.Hour, false)
	}
	// A writer that died just now, or one between its create and its lock:
	// its temp file stays until it is a second old.
	justDied := filepath.Join(s0.v1Dir, ".e"+tok[1:]+"-"+s0.digest+"_m_0_1.tmp")
	writeTempFile(t, justDied, 100, 0, false)
	for _, p := range live {
		writeTempFile(t, p, 100, time.Hour, true)
	}
	for _, p := range young {
		writeTempFile(t, p, 100, 0, false)
	}
	for _, p := range others {
		writeTempFile(t, p, 100, time.Hour, false)
	}
	s := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	for _, p := range dead {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("dead writer's %s survived New: %v", filepath.Base(p), err)
		}
	}
	for _, p := range append(append(live, young...), others...) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("New removed %s: %v", filepath.Base(p), err)
		}
	}
	if n := s.Stats().ReclaimedTemps; n != int64(len(dead)) {
		t.Errorf("Stats.ReclaimedTemps = %d, want %d", n, len(dead))
	}
	if _, err := os.Stat(justDied); err != nil {
		t.Errorf("New removed a temp file younger than a second: %v", err)
	}
	old := time.Now().Add(-2 * tempGrace)
	if err := os.Chtimes(justDied, old, old); err != nil {
		t.Fatal(err)
	}
	if err := s.reclaimTemps(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(justDied); !os.IsNotExist(err) {
		t.Errorf("a dead writer's temp file a second old survived a reclaim: %v", err)
	}
}

// TestTempsDuringEviction: eviction reclaims dead writers' temp
// files, and live writers' temp files count toward MaxBytes.
func TestTempsDuringEviction(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 5)
	file := oneKeyFile(p.PageBytes())
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes()), MaxBytes: 4 * file, EvictionRatio: 1}, p)
	deadTmp := filepath.Join(s.v1Dir, ".0123456789abcdef-"+s.digest+"_m_0_1.tmp")
	liveTmp := filepath.Join(s.v1Dir, ".1123456789abcdef-"+s.digest+"_m_0_1.tmp")
	writeTempFile(t, deadTmp, int(file), time.Hour, false)
	writeTempFile(t, liveTmp, int(2*file), time.Hour, true)
	for i := range 5 {
		if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx[i*ps:(i+1)*ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	if _, err := os.Stat(deadTmp); !os.IsNotExist(err) {
		t.Errorf("eviction left the dead writer's temp file: %v", err)
	}
	if _, err := os.Stat(liveTmp); err != nil {
		t.Errorf("eviction removed the live writer's temp file: %v", err)
	}
	// The live temp file takes two files' room of four.
	if n := batchFileCount(t, s); n != 2 {
		t.Errorf("%d batch files, want 2: the live temp file must count toward MaxBytes", n)
	}
}

// TestReclaimRacesWriter: where O_TMPFILE is refused, a reclaim that runs
// between a writer's create and its lock removes the temp file, or holds it
// while the writer tries to lock it. The writer must notice and write the file again: no write fails
// and no page is lost.
func TestReclaimRacesWriter(t *testing.T) {
	for _, how := range []string{"removed before the lock", "held during the lock"} {
		t.Run(how, func(t *testing.T) {
			p, idx := randomPages(t, 2)
			ps := mhaCfg.PageSize
			dir := t.TempDir()
			var reclaimer *Store
			var armed atomic.Bool
			// Where O_TMPFILE is refused, temp files are made by name and
			// then locked: the window this test is about.
			// The hook holds the reclaim's lock until the writer's own
			// call returns (its defers run after it), so it stays a
			// function of its own.
			sys := newErrorFS().refuseTmpfile().syscalls()
			sys.FcntlFlock = func(fd uintptr, cmd int, lk *unix.Flock_t) error {
				if cmd == unix.F_OFD_SETLK && lk.Type == unix.F_WRLCK && armed.Swap(false) {
					if how == "removed before the lock" {
						// As if the writer had waited past tempGrace for a CPU.
						path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
						if err != nil {
							t.Fatal(err)
						}
						old := time.Now().Add(-2 * tempGrace)
						if err := os.Chtimes(path, old, old); err != nil {
							t.Fatal(err)
						}
						if err := reclaimer.reclaimTemps(); err != nil {
							t.Error(err)
						}
						if _, err := os.Stat(path); !os.IsNotExist(err) {
							t.Fatalf("setup: the reclaim left the unlocked temp file: %v", err)
						}
					} else {
						// Lock it as a reclaim does, through another open
						// file description, for the writer's attempt.
						rfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
						if err != nil {
							t.Fatal(err)
						}
						defer unix.Close(rfd)
						rl := unix.Flock_t{Type: unix.F_RDLCK}
						if err := unix.FcntlFlock(uintptr(rfd), unix.F_OFD_SETLK, &rl); err != nil {
							t.Fatal(err)
						}
						// ... and removes it before letting go.
						path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
						if err != nil {
							t.Fatal(err)
						}
						defer os.Remove(path)
					}
				}
				return unix.FcntlFlock(fd, cmd, lk)
			}
			s := newStore(t, Config{Dir: dir, ModelName: "m", Syscalls: sys}, p)
			reclaimer = newStore(t, Config{Dir: dir, ModelName: "m"}, p)
			page, _ := p.GetDataPage(idx[0])
			armed.Store(true)
			if err := s.Set("o", page); err != nil {
				t.Fatalf("Set = %v", err)
			}
			if armed.Swap(true) {
				t.Fatal("setup: Set took no lock")
			}
			if ok, err := s.BatchSetV1([]string{"v"}, idx[ps:]); err != nil || !ok[0] {
				t.Fatalf("BatchSetV1 = %v, %v", ok, err)
			}
			if armed.Load() {
				t.Fatal("setup: BatchSetV1 took no lock")
			}
			got := make([]byte, len(page))
			if err := s.Get("o", got); err != nil || !bytes.Equal(got, page) {
				t.Errorf("Get(o) = %v", err)
			}
			dst, _ := p.Alloc(ps)
			if ok, err := reclaimer.BatchGetV1([]string{"v"}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[ps]) {
				t.Errorf("BatchGetV1(v) = %v, %v", ok, err)
			}
			if left := tempFiles(t, dir); len(left) > 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

// TestReclaimNeverFailsLiveWriter: a store that reclaims temp files over
// and over, beside a store that writes through both interfaces, never makes
// a write fail.
func TestReclaimNeverFailsLiveWriter(t *testing.T) {
	p, idx := randomPages(t, 4)
	dir := t.TempDir()
	w := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(p.PageBytes())}, p)
	r := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			_ = r.reclaimTemps()
		}
	}()
	for n := 0; n < 300; n++ {
		keys := []string{fmt.Sprint("a", n), fmt.Sprint("b", n), fmt.Sprint("c", n), fmt.Sprint("d", n)}
		if ok, err := w.BatchSetV1(keys, idx); err != nil || !all(ok) {
			t.Errorf("BatchSetV1 beside a reclaim = %v, %v", ok, err)
		}
		if err := w.Set(fmt.Sprint("o", n), make([]byte, 10)); err != nil {
			t.Errorf("Set beside a reclaim = %v", err)
		}
	}
	stop.Store(true)
	<-done
	if n := r.Stats().ReclaimedTemps; n != 0 {
		t.Errorf("a reclaim removed %d live writers' temp files", n)
	}
}
