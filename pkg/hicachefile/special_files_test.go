//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestDeviceOverIndexedBatchIsMiss: a character device renamed over a batch
// file this store has indexed is a miss counted in Stats.SpecialFiles,
// and nothing read from it is served (a read of a file of the indexed size
// makes no fstat first: at most that size and one byte are read from the
// device before the fstat that a failed read makes tells what it is).
func TestDeviceOverIndexedBatchIsMiss(t *testing.T) {
	for _, direct := range []bool{false, true} {
		for _, dev := range []int{3, 5} { // /dev/null, /dev/zero
			ps := mhaCfg.PageSize
			p, idx := randomPages(t, 2)
			s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", DirectIO: direct}, p)
			if ok, err := s.BatchSetV1([]string{"v"}, idx[:ps]); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
			loc, _ := s.Locate("v")
			tmp := loc.Path + ".dev"
			mkdev(t, tmp, dev)
			if err := os.Rename(tmp, loc.Path); err != nil {
				t.Fatal(err)
			}
			before := s.Stats()
			if ok, err := s.BatchGetV1([]string{"v"}, idx[ps:]); err != nil || ok[0] {
				t.Errorf("BatchGetV1 of a device = %v, %v", ok, err)
			}
			if after := s.Stats(); after.SpecialFiles == before.SpecialFiles {
				t.Errorf("direct=%v dev 1,%d: a device under a batch name is not counted in SpecialFiles: %+v", direct, dev, after)
			}
		}
	}
}

// TestSpecialFilesInV1DirNeverBlock: special files under temp names and under
// non-store names in the V1 directory and Dir never block New, Clear or a
// reclaim, and Clear removes those under store names.
func TestSpecialFilesInV1DirNeverBlock(t *testing.T) {
	for _, kind := range []string{"fifo", "symlink", "dir", "socket", "device"} {
		t.Run(kind, func(t *testing.T) {
			p, _ := randomPages(t, 1)
			dir := t.TempDir()
			w := newStore(t, Config{Dir: dir, ModelName: "m", MaxBytes: 1 << 20}, p)
			tmpName := ".0123456789abcdef-" + w.digest + "_m_0_1.tmp"
			paths := []string{
				filepath.Join(w.v1Dir, tmpName),
				filepath.Join(dir, tmpName),
				filepath.Join(dir, "k_m_0_1.bin.tmp.12.34.abcdef"),
			}
			for _, path := range paths {
				plant(t, kind, path, 0)
			}
			var s *Store
			within(t, "New", func() { s = newStore(t, Config{Dir: dir, ModelName: "m", MaxBytes: 1 << 20}, p) })
			within(t, "reclaim", func() { _ = s.reclaimTemps() })
			within(t, "Clear", func() {
				if err := s.Clear(); err != nil {
					t.Errorf("Clear = %v", err)
				}
			})
			for _, path := range paths {
				if _, err := os.Lstat(path); err == nil {
					t.Errorf("Clear left %s", path)
				}
			}
		})
	}
}

// TestLocateNeverReadsDevice: Locate never reads a device renamed over a batch
// file; it reports false and counts it.
func TestLocateNeverReadsDevice(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 1)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	if ok, err := s.BatchSetV1([]string{"v"}, idx[:ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	loc, _ := s.Locate("v")
	tmp := loc.Path + ".dev"
	mkdev(t, tmp, 5)
	if err := os.Rename(tmp, loc.Path); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Locate("v"); ok {
		t.Errorf("Locate of a device = true")
	}
	if s.Stats().SpecialFiles == 0 {
		t.Errorf("Locate read a device without counting it")
	}
}

// TestSetReplacesSpecialFile: a special file planted under a key's
// old-format name is a miss, and a write of the key replaces it.
func TestSetReplacesSpecialFile(t *testing.T) {
	for _, kind := range []string{"fifo", "symlink", "dir", "socket", "device"} {
		t.Run(kind, func(t *testing.T) {
			ps := mhaCfg.PageSize
			p, idx := randomPages(t, 2)
			page, _ := p.GetDataPage(idx[0])
			s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
			for _, k := range []string{"set", "batch"} {
				plant(t, kind, s.FilePath(k), len(page))
			}
			within(t, "Set", func() {
				if err := s.Set("set", page); err != nil {
					t.Errorf("Set over a %s = %v", kind, err)
				}
				if ok, err := s.BatchSet([]string{"batch"}, [][]byte{page}); err != nil || !ok[0] {
					t.Errorf("BatchSet over a %s = %v, %v", kind, ok, err)
				}
			})
			for _, k := range []string{"set", "batch"} {
				got := make([]byte, len(page))
				if err := s.Get(k, got); err != nil || !bytes.Equal(got, page) {
					t.Errorf("Get(%s) after writing over a %s = %v", k, kind, err)
				}
			}
			dst, _ := p.Alloc(ps)
			if ok, err := s.BatchGetV1([]string{"set"}, dst); err != nil || !ok[0] || !samePages(t, p, dst[0], idx[0]) {
				t.Errorf("BatchGetV1(set) after writing over a %s = %v, %v", kind, ok, err)
			}
		})
	}
}

// TestSpecialFilesNeverBlock: a FIFO (or another special file) named like
// one of the store's files never hangs Get, BatchGet, BatchGetV1
// (old-format fallback and batch file), New over a directory holding one,
// or Close. Every special file under a store name is a miss, counted in
// Stats, and Clear removes it without opening it.
func TestSpecialFilesNeverBlock(t *testing.T) {
	for _, kind := range []string{"fifo", "symlink", "dir", "socket", "device"} {
		t.Run(kind, func(t *testing.T) {
			p, idx := randomPages(t, 2)
			ps := mhaCfg.PageSize
			dir := t.TempDir()
			w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
			if ok, err := w.BatchSetV1([]string{"v"}, idx[:ps]); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
			loc, _ := w.Locate("v")
			if err := os.Remove(loc.Path); err != nil {
				t.Fatal(err)
			}
			pb := p.PageBytes()
			plant(t, kind, loc.Path, 0)
			plant(t, kind, w.FilePath("o"), pb)
			// A batch file name another process planted before the store
			// opened.
			plant(t, kind, filepath.Join(w.v1Dir, "b0123456789abcdef_m_0_1.batch.bin"), pb)

			var s *Store
			within(t, "New", func() { s = newStore(t, Config{Dir: dir, ModelName: "m"}, p) })
			page := make([]byte, pb)
			within(t, "Get", func() {
				if err := s.Get("o", page); !errors.Is(err, ErrNotFound) {
					t.Errorf("Get(o) = %v, want ErrNotFound", err)
				}
			})
			within(t, "BatchGet", func() {
				if ok, err := s.BatchGet([]string{"o"}, [][]byte{page}); err != nil || ok[0] {
					t.Errorf("BatchGet(o) = %v, %v", ok, err)
				}
			})
			dst, _ := p.Alloc(2 * ps)
			for _, st := range []*Store{w, s} {
				within(t, "BatchGetV1", func() {
					if ok, err := st.BatchGetV1([]string{"o", "v"}, dst); err != nil || ok[0] || ok[1] {
						t.Errorf("BatchGetV1(o, v) = %v, %v", ok, err)
					}
				})
				if st.Exists("o") {
					t.Errorf("Exists(o) = true for a %s", kind)
				}
			}
			if n := s.Stats().SpecialFiles; n < 3 {
				t.Errorf("Stats.SpecialFiles = %d, want at least 3", n)
			}
			within(t, "Clear", func() {
				if err := s.Clear(); err != nil {
					t.Errorf("Clear = %v", err)
				}
			})
			for _, path := range []string{loc.Path, w.FilePath("o"), filepath.Join(w.v1Dir, "b0123456789abcdef_m_0_1.batch.bin")} {
				if _, err := os.Lstat(path); !os.IsNotExist(err) {
					t.Errorf("Clear left %s: %v", path, err)
				}
			}
			within(t, "Close", func() { _ = s.Close() })
		})
	}
}
