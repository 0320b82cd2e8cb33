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
			if files, _ := filepath.Glob(filepath.Join(dir, v1DirName+s.suffix, "*"+batchExt)); len(files) != 0 {
				t.Errorf("%s: Clear left %d batch files at the path Dir", how, len(files))
			}
		})
	}
}
