//go:build linux

package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirReplacedOverAndOverWritesAtPath: Dir moved away and made again, over and
// over under a live store: every write lands at the path Dir, through
// both interfaces, and no descriptor accumulates.
func TestDirReplacedOverAndOverWritesAtPath(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 2)
		page, _ := p.GetDataPage(idx[0])
		base := t.TempDir()
		dir := filepath.Join(base, "store")
		s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		if err := s.Set("warm", page); err != nil {
			t.Fatal(err)
		}
		s.Exists("warm")
		before := openFDs(t)
		for i := range 100 {
			if err := os.Rename(dir, filepath.Join(base, fmt.Sprint("old", i))); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			k := fmt.Sprint("k", i)
			if i%2 == 0 {
				if err := s.Set(k, page); err != nil {
					t.Fatal(err)
				}
			} else if ok, err := s.BatchSetV1([]string{k}, idx[:ps]); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
			if !s.Exists(k) {
				t.Fatalf("Exists(%s) after writing it", k)
			}
			if i%2 == 0 {
				if _, err := os.Stat(filepath.Join(dir, s.oldName(k))); err != nil {
					t.Fatalf("Set(%s) did not land at Dir: %v", k, err)
				}
			} else if loc, ok := s.Locate(k); !ok || !strings.HasPrefix(loc.Path, dir+"/") {
				t.Fatalf("BatchSetV1(%s) landed at %v", k, loc)
			} else if _, err := os.Stat(loc.Path); err != nil {
				t.Fatalf("BatchSetV1(%s) did not land at Dir: %v", k, err)
			}
		}
		if after := openFDs(t); after > before+8 {
			t.Errorf("%d descriptors open after 100 replacements of Dir, %d before", after, before)
		}
	})
}

// TestClearAfterDirReplaced: Clear after Dir was removed or moved away
// under a live store succeeds, and removes what the store wrote at the
// path Dir since.
func TestClearAfterDirReplaced(t *testing.T) {
	for _, how := range []string{"removed", "moved"} {
		bothModes(t, func(t *testing.T, noWatch bool) {
			ps := mhaCfg.PageSize
			p, idx := randomPages(t, 2)
			page, _ := p.GetDataPage(idx[0])
			dir := filepath.Join(t.TempDir(), "store")
			s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
			if err := s.Set("a", page); err != nil {
				t.Fatal(err)
			}
			var err error
			if how == "removed" {
				err = os.RemoveAll(dir)
			} else if err = os.Rename(dir, dir+".old"); err == nil {
				err = os.Mkdir(dir, 0o755)
			}
			if err != nil {
				t.Fatal(err)
			}
			within(t, "Clear", func() {
				if err := s.Clear(); err != nil {
					t.Errorf("%s: Clear = %v", how, err)
				}
			})
			if err := s.Set("b", page); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.BatchSetV1([]string{"v"}, idx[:ps]); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
			if err := s.Clear(); err != nil {
				t.Fatalf("%s: second Clear = %v", how, err)
			}
			for _, k := range []string{"a", "b", "v"} {
				if s.Exists(k) {
					t.Errorf("%s: Exists(%s) after Clear", how, k)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, s.oldName("b"))); err == nil {
				t.Errorf("%s: Clear left b at the path Dir", how)
			}
			if files, _ := filepath.Glob(filepath.Join(s.v1Dir, "*"+batchExt)); len(files) != 0 {
				t.Errorf("%s: Clear left %d batch files at the path Dir", how, len(files))
			}
		})
	}
}

// TestDirReplacedDuringWriteRewritesAtPath: Dir is moved away and made again while
// a BatchSetV1 writes its unnamed file (before or after the link), and
// another call of the store may see the replacement before the write
// adds its file to the index. The write may land in the old directory,
// but then the live store must not count the key as stored: a later
// BatchSetV1 writes it again at the path Dir, where other stores find it.
func TestDirReplacedDuringWriteRewritesAtPath(t *testing.T) {
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

// TestDirReplacedOldInterfaceWritesAtPath: after rm -rf Dir, or mv Dir
// Dir.old; mkdir Dir, under a live store, writes through either interface
// land at the path Dir (not in Dir.old, and not failing).
func TestDirReplacedOldInterfaceWritesAtPath(t *testing.T) {
	for _, how := range []string{"removed", "moved"} {
		t.Run(how, func(t *testing.T) {
			bothModes(t, func(t *testing.T, noWatch bool) {
				p, idx := randomPages(t, 2)
				ps := mhaCfg.PageSize
				dir := filepath.Join(t.TempDir(), "store")
				s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, MaxBytes: 1 << 30}, p)
				page, _ := p.GetDataPage(idx[0])
				if err := s.Set("before", page); err != nil {
					t.Fatal(err)
				}
				var err error
				if how == "removed" {
					err = os.RemoveAll(dir)
				} else if err = os.Rename(dir, dir+".old"); err == nil {
					err = os.Mkdir(dir, 0o755)
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Set("k", page); err != nil {
					t.Fatalf("Set after the directory was %s: %v", how, err)
				}
				if ok, err := s.BatchSet([]string{"k2"}, [][]byte{page}); err != nil || !ok[0] {
					t.Fatalf("BatchSet after the directory was %s: %v, %v", how, ok, err)
				}
				if ok, err := s.BatchSetV1([]string{"v"}, idx[ps:]); err != nil || !ok[0] {
					t.Fatalf("BatchSetV1 after the directory was %s: %v, %v", how, ok, err)
				}
				for _, name := range []string{s.oldName("k"), s.oldName("k2")} {
					if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
						t.Errorf("%s is not at the path Dir: %v", name, err)
					}
				}
				if files, _ := filepath.Glob(filepath.Join(s.v1Dir, "*"+batchExt)); len(files) != 1 {
					t.Errorf("%d batch files at the path Dir, want 1", len(files))
				}
				if how == "moved" {
					if _, err := os.Stat(filepath.Join(dir+".old", s.oldName("k"))); err == nil {
						t.Errorf("Set wrote into the moved directory")
					}
				}
			})
		})
	}
}

// TestRetiredDirsClosed: removing the V1 directory over and over under a
// live store leaves no descriptor of the removed directories open.
// With inotify each removal costs the kernel a few milliseconds to drop the
// watch, so that mode runs fewer.
func TestRetiredDirsClosed(t *testing.T) { bothModes(t, testRetiredDirsClosed) }

func testRetiredDirsClosed(t *testing.T, noWatch bool) {
	n := 1000
	if !noWatch {
		n = 100
	}
	p, idx := randomPages(t, 1)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", NoWatch: noWatch}, p)
	if ok, err := s.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	s.Exists("warm-up")
	before := openFDs(t)
	for i := range n {
		if err := os.RemoveAll(s.v1Dir); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.BatchSetV1([]string{fmt.Sprint("k", i)}, idx); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	if after := openFDs(t); after > before+8 {
		t.Errorf("%d descriptors open after %d removals of the V1 directory, %d before", after, n, before)
	}
}

// TestV1DirReplaced: an operator removes or moves the V1 directory under an
// open store. The store must find its way to the directory now at the path:
// its writes land there, and pages other stores write there are found.
func TestV1DirReplaced(t *testing.T) {
	for _, how := range []string{"removed", "moved"} {
		t.Run(how, func(t *testing.T) {
			bothModes(t, func(t *testing.T, noWatch bool) {
				ps := mhaCfg.PageSize
				p, idx := randomPages(t, 2)
				dir := t.TempDir()
				a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
				if ok, err := a.BatchSetV1([]string{"before"}, idx[:ps]); err != nil || !ok[0] {
					t.Fatal(ok, err)
				}
				var err error
				if how == "removed" {
					err = os.RemoveAll(a.v1Dir)
				} else {
					err = os.Rename(a.v1Dir, a.v1Dir+".old")
				}
				if err != nil {
					t.Fatal(err)
				}
				b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
				if ok, err := b.BatchSetV1([]string{"kb"}, idx[:ps]); err != nil || !ok[0] {
					t.Fatal(ok, err)
				}
				if !a.Exists("kb") {
					t.Error("a does not find a page written into the new directory")
				}
				if a.Exists("before") {
					t.Error("a still finds a page whose directory is gone from the path")
				}
				if ok, err := a.BatchSetV1([]string{"ka"}, idx[ps:]); err != nil || !ok[0] {
					t.Fatalf("a cannot write after the directory was %s: %v, %v", how, ok, err)
				}
				if !b.Exists("ka") {
					t.Error("b does not find a's page: a wrote it somewhere else")
				}
			})
		})
	}
}
