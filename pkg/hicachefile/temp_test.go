package hicachefile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// tempsIn returns the paths of the store's temp files in Dir and its V1
// directory.
func tempsIn(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	for _, d := range []string{s.dir, s.v1Dir} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if s.isTmpName(e.Name()) {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
	}
	return out
}

// refuseTmpfile is an Openat that refuses O_TMPFILE as some FUSE and NFS
// file systems do.
func refuseTmpfile(dirfd int, path string, flags int, mode uint32) (int, error) {
	if flags&unix.O_TMPFILE == unix.O_TMPFILE {
		return -1, unix.EOPNOTSUPP
	}
	return unix.Openat(dirfd, path, flags, mode)
}

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

// TestTempNeverUnlocked (issue 7.5): a temp file must never be on disk
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
	sys := Syscalls{
		Pwritev: func(fd int, iovs [][]byte, off int64) (int, error) {
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
			return pwritevRaw(fd, iovs, off)
		},
		Linkat: func(od int, op string, nd int, np string, fl int) error {
			if err := unix.Linkat(od, op, nd, np, fl); err != nil {
				return err
			}
			if s.isBatchName(np) {
				published++ // complete, under its final name
				return nil
			}
			links++
			path := "/proc/self/fd/" + strconv.Itoa(nd) + "/" + np
			if !bornLocked(np) || !lockedAt(t, path) {
				t.Errorf("temp file %s linked in unlocked, or not marked as locked from birth", np)
			}
			return nil
		},
	}
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
			sys := Syscalls{Renameat: func(od int, op string, nd int, np string) error {
				renamed = append(renamed, op)
				return unix.Renameat(od, op, nd, np)
			}}
			if how == "open" {
				sys.Openat = refuseTmpfile
			} else {
				sys.Linkat = func(int, string, int, string, int) error { return unix.EPERM }
			}
			s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", Syscalls: sys}, p)
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
