package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

// Adversarial probes of issue 7's promises.

// TestAdvClearMatrix: after Clear, live or after a reopen, no key written
// through either interface exists or is served, whatever the key and the
// naming (MHA, MLA, unnamed model, PP > 1, a model name with '/'), and a
// new write of the key is served afterwards.
func TestAdvClearMatrix(t *testing.T) {
	cfgs := map[string]Config{
		"mha":   {ModelName: "m"},
		"mla":   {ModelName: "m", IsMLA: true, TPRank: 1, TPSize: 2},
		"empty": {},
		"pp":    {ModelName: "m", PPRank: 1, PPSize: 2, TPRank: 1, TPSize: 4},
		"slash": {ModelName: "org/m_x"},
	}
	keys := []string{"abc", "req42_page_7", "a.b", "_", "__", "k_m_0_1", "-x"}
	for name, cfg := range cfgs {
		for _, reopen := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reopen=%v", name, reopen), func(t *testing.T) {
				ps := mhaCfg.PageSize
				pc := mhaCfg
				pc.Pages = 64
				p := newPool(t, pc)
				idx, _ := p.Alloc(2 * len(keys) * ps)
				fillRandom(t, p, idx)
				cfg := cfg
				cfg.Dir = t.TempDir()
				s := newStore(t, cfg, p)
				old := idx[:len(keys)*ps]
				fresh := idx[len(keys)*ps:]
				for i, k := range keys {
					pg, _ := p.GetDataPage(old[i*ps])
					if err := s.Set(k+".o", pg); err != nil {
						t.Fatal(err)
					}
				}
				if ok, err := s.BatchSetV1(keys, old); err != nil || !all(ok) {
					t.Fatal(ok, err)
				}
				if reopen {
					_ = s.Close()
					s = newStore(t, cfg, p)
				}
				if err := s.Clear(); err != nil {
					t.Fatal(err)
				}
				dst, _ := p.Alloc(len(keys) * ps)
				for i, k := range keys {
					for _, kk := range []string{k, k + ".o"} {
						if s.Exists(kk) {
							t.Errorf("Exists(%q) after Clear", kk)
						}
					}
					if err := s.Get(k+".o", make([]byte, p.PageBytes())); !errors.Is(err, ErrNotFound) {
						t.Errorf("Get(%q) after Clear = %v", k+".o", err)
					}
					if ok, err := s.BatchGetV1([]string{k, k + ".o"}, dst[:2*ps]); err != nil || ok[0] || ok[1] {
						t.Errorf("BatchGetV1(%q) after Clear = %v, %v", k, ok, err)
					}
					_ = i
				}
				// New writes of the same keys are served, not the old pages.
				for i, k := range keys {
					pg, _ := p.GetDataPage(fresh[i*ps])
					if err := s.Set(k+".o", pg); err != nil {
						t.Fatal(err)
					}
					got := make([]byte, len(pg))
					if err := s.Get(k+".o", got); err != nil || !bytes.Equal(got, pg) {
						t.Errorf("Get(%q) after Clear and Set = %v or stale", k+".o", err)
					}
				}
				if ok, err := s.BatchSetV1(keys, fresh); err != nil || !all(ok) {
					t.Fatal(ok, err)
				}
				if ok, err := s.BatchGetV1(keys, dst); err != nil || !all(ok) {
					t.Fatal(ok, err)
				}
				for i := range keys {
					if !samePages(t, p, dst[i*ps], fresh[i*ps]) {
						t.Errorf("BatchGetV1(%q) after Clear served a stale page", keys[i])
					}
				}
				// A fresh store agrees.
				s2 := newStore(t, cfg, p)
				if ok, err := s2.BatchGetV1(keys, dst); err != nil || !all(ok) {
					t.Fatal(ok, err)
				}
				for i := range keys {
					if !samePages(t, p, dst[i*ps], fresh[i*ps]) {
						t.Errorf("fresh BatchGetV1(%q) after Clear served a stale page", keys[i])
					}
				}
			})
		}
	}
}

// TestAdvBadInputs: invalid keys and host indices give errors or false
// entries, never a panic.
func TestAdvBadInputs(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 4)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	long := strings.Repeat("a", 300)
	bad := []string{"", ".", "..", "a/b", "a\x00b", long, "/", strings.Repeat("b", 255)}
	for _, k := range bad {
		if err := s.Set(k, make([]byte, 8)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Set(%q) = %v", k, err)
		}
		if err := s.Get(k, make([]byte, 8)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(%q) = %v", k, err)
		}
		if s.Exists(k) {
			t.Errorf("Exists(%q)", k)
		}
		if ok, err := s.BatchSetV1([]string{k}, idx[:ps]); ok[0] {
			t.Errorf("BatchSetV1(%q) = %v, %v", k, ok, err)
		}
		if ok, err := s.BatchGetV1([]string{k}, idx[:ps]); ok[0] {
			t.Errorf("BatchGetV1(%q) = %v, %v", k, ok, err)
		}
		if ok, err := s.BatchSet([]string{k}, [][]byte{make([]byte, 8)}); ok[0] || err == nil {
			t.Errorf("BatchSet(%q) = %v, %v", k, ok, err)
		}
		if ok, err := s.BatchGet([]string{k}, [][]byte{make([]byte, 8)}); ok[0] {
			t.Errorf("BatchGet(%q) = %v, %v", k, ok, err)
		}
		s.Locate(k)
	}
	n := int64(mhaCfg.Pages * ps)
	for name, hi := range map[string][]int64{
		"short":     idx[:ps-1],
		"long":      idx[:ps+1],
		"unaligned": {1, 2, 3, 4},
		"negative":  {-4, -3, -2, -1},
		"past end":  {n, n + 1, n + 2, n + 3},
		"huge":      {1 << 62, 1<<62 + 1, 1<<62 + 2, 1<<62 + 3},
		"nil":       nil,
	} {
		if ok, err := s.BatchSetV1([]string{"x"}, hi); err == nil || ok[0] {
			t.Errorf("BatchSetV1 with %s indices = %v, %v", name, ok, err)
		}
		if ok, err := s.BatchGetV1([]string{"x"}, hi); err == nil || ok[0] {
			t.Errorf("BatchGetV1 with %s indices = %v, %v", name, ok, err)
		}
	}
	// Duplicate keys in one batch, and empty batches.
	if ok, err := s.BatchSetV1([]string{"d", "d"}, idx[:2*ps]); err != nil || !all(ok) {
		t.Errorf("BatchSetV1(d, d) = %v, %v", ok, err)
	}
	if ok, err := s.BatchGetV1([]string{"d", "d"}, idx[2*ps:4*ps]); err != nil || !all(ok) {
		t.Errorf("BatchGetV1(d, d) = %v, %v", ok, err)
	}
	if ok, err := s.BatchGetV1([]string{"d", "d"}, append(append([]int64{}, idx[2*ps:3*ps]...), idx[2*ps:3*ps]...)); !errors.Is(err, ErrLength) || ok[0] {
		t.Errorf("BatchGetV1(d, d) into one page = %v, %v", ok, err)
	}
	for _, f := range []func() error{
		func() error { _, err := s.BatchSetV1(nil, nil); return err },
		func() error { _, err := s.BatchGetV1(nil, nil); return err },
		func() error { _, err := s.BatchSet(nil, nil); return err },
		func() error { _, err := s.BatchGet(nil, nil); return err },
	} {
		if err := f(); err != nil {
			t.Errorf("empty batch = %v", err)
		}
	}
	if s.BatchExists(nil) != 0 {
		t.Errorf("BatchExists(nil) != 0")
	}
	if _, err := s.BatchSet([]string{"a"}, nil); !errors.Is(err, ErrLength) {
		t.Errorf("BatchSet length mismatch = %v", err)
	}
	if err := s.Get("d", nil); err == nil {
		t.Errorf("Get(d, nil) = nil")
	}
}

// TestAdvWrongSizeMatrix: every wrong size of an old-format file, with and
// without a pool, is absent with a pool, replaced by every write, then
// served.
func TestAdvWrongSizeMatrix(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 1)
	page, _ := p.GetDataPage(idx[0])
	pb := len(page)
	for _, n := range []int{0, 1, 7, pb - 1, pb + 1, 2 * pb} {
		for _, withPool := range []bool{false, true} {
			dir := t.TempDir()
			var s *Store
			if withPool {
				s = newStore(t, Config{Dir: dir, ModelName: "m"}, p)
			} else {
				s = newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
			}
			for _, k := range []string{"a", "b", "c", "d_e"} {
				if err := os.WriteFile(s.FilePath(k), make([]byte, n), 0o644); err != nil {
					t.Fatal(err)
				}
				if withPool && s.Exists(k) {
					t.Errorf("size %d: Exists(%s) with a pool", n, k)
				}
			}
			got := make([]byte, pb)
			if err := s.Get("a", got); !errors.Is(err, ErrCorrupt) {
				t.Errorf("size %d: Get = %v, want ErrCorrupt", n, err)
			}
			if err := s.Set("a", page); err != nil {
				t.Fatal(err)
			}
			if ok, err := s.BatchSet([]string{"b"}, [][]byte{page}); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
			for _, k := range []string{"a", "b"} {
				if err := s.Get(k, got); err != nil || !bytes.Equal(got, page) {
					t.Errorf("size %d pool %v: Get(%s) after write = %v", n, withPool, k, err)
				}
			}
			if !withPool {
				_ = s.RegisterMemPoolHost(p)
			}
			if s.Exists("c") || s.Exists("d_e") {
				t.Errorf("size %d: Exists(c) after registering", n)
			}
			if ok, err := s.BatchSetV1([]string{"c", "d_e"}, append(append([]int64{}, idx[:ps]...), idx[:ps]...)); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			dst, _ := p.Alloc(2 * ps)
			if ok, err := s.BatchGetV1([]string{"c", "d_e"}, dst); err != nil || !all(ok) || !samePages(t, p, dst[0], idx[0]) || !samePages(t, p, dst[ps], idx[0]) {
				t.Errorf("size %d: BatchGetV1 after BatchSetV1 = %v, %v", n, ok, err)
			}
			_ = p.Free(dst)
		}
	}
}

// TestAdvDeviceReplacesKnownBatch: a character device renamed over a batch
// file this store has indexed is a miss counted in Stats.SpecialFiles,
// and nothing read from it is served (a read of a file of the indexed size
// makes no fstat first: at most that size and one byte are read from the
// device before the fstat that a failed read makes tells what it is).
func TestAdvDeviceReplacesKnownBatch(t *testing.T) {
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
			if !mkdev(t, tmp, dev) {
				return
			}
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

// TestAdvSpecialInV1Dir: special files under temp names and under
// non-store names in the V1 directory and Dir never block New, Clear or a
// reclaim, and Clear removes those under store names.
func TestAdvSpecialInV1Dir(t *testing.T) {
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
				if !plant(t, kind, path, 0) {
					return
				}
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

// TestAdvLocateDevice: Locate never reads a device renamed over a batch
// file; it reports false and counts it.
func TestAdvLocateDevice(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 1)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	if ok, err := s.BatchSetV1([]string{"v"}, idx[:ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	loc, _ := s.Locate("v")
	tmp := loc.Path + ".dev"
	if !mkdev(t, tmp, 5) {
		return
	}
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

// mkdev makes the character device 1,minor (/dev/null 3, /dev/zero 5) at
// path; it reports false, logged, where this process may not.
func mkdev(t *testing.T, path string, minor int) bool {
	t.Helper()
	err := unix.Mknod(path, unix.S_IFCHR|0o644, int(unix.Mkdev(1, uint32(minor))))
	if err == unix.EPERM {
		t.Logf("cannot make a device here (needs CAP_MKNOD)")
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// TestAdvFDLimitWhileLoading: running out of descriptors while loading
// the index of a batch file another store just wrote is never a silent
// miss, also for a key with '_', which has no old-format fallback to fail
// instead.
func TestAdvFDLimitWhileLoading(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 2)
		dir := t.TempDir()
		var failing atomic.Bool
		sys := Syscalls{Openat: func(d int, path string, fl int, m uint32) (int, error) {
			if fl&unix.O_CREAT == 0 && failing.Load() {
				return -1, unix.EMFILE
			}
			return unix.Openat(d, path, fl, m)
		}}
		r := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, Syscalls: sys}, p)
		r.Exists("warm-up")
		w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
		if ok, err := w.BatchSetV1([]string{"k_1"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		failing.Store(true)
		ok, err := r.BatchGetV1([]string{"k_1"}, idx[ps:])
		if err == nil && !ok[0] {
			t.Errorf("BatchGetV1(k_1) out of descriptors = %v, nil: a silent miss", ok)
		}
		failing.Store(false)
		if ok, err := r.BatchGetV1([]string{"k_1"}, idx[ps:]); err != nil || !ok[0] || !samePages(t, p, idx[0], idx[ps]) {
			t.Errorf("BatchGetV1(k_1) with descriptors back = %v, %v", ok, err)
		}
	})
}

// TestAdvForgedDigestCollision: with the index forged so that key b's
// digest also names key a's entry (what a digest collision does), no read
// serves a's page for b, a stays served, and b's own copy is found.
func TestAdvForgedDigestCollision(t *testing.T) {
	ps := mhaCfg.PageSize
	for _, bStored := range []bool{false, true} {
		p, idx := randomPages(t, 4)
		s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
		if bStored {
			if ok, err := s.BatchSetV1([]string{"b"}, idx[ps:2*ps]); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
		}
		if ok, err := s.BatchSetV1([]string{"a"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		// Forge: a's file holds a second entry, under b's digest, pointing
		// at a's page and index entry.
		ha, hb := s.idx.Hash("a"), s.idx.Hash("b")
		refs := make([]index.Ref, 1)
		s.idx.Lookup([]uint64{ha}, s.pool.Load().fp, refs, nil)
		name, meta, ok := s.idx.File(refs[0].File)
		if !ok {
			t.Fatal("a not indexed")
		}
		s.idx.AddHashed(name, meta, []uint64{hb, ha}, []uint32{refs[0].Ent, refs[0].Ent}, []uint32{refs[0].Page, refs[0].Page})
		dst, _ := p.Alloc(2 * ps)
		got, err := s.BatchGetV1([]string{"b", "a"}, dst)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != bStored || (bStored && !samePages(t, p, dst[0], idx[ps])) {
			t.Errorf("b stored=%v: BatchGetV1(b) = %v over a forged collision", bStored, got[0])
		}
		if !got[1] || !samePages(t, p, dst[ps], idx[0]) {
			t.Errorf("b stored=%v: BatchGetV1(a) = %v after a forged collision", bStored, got[1])
		}
	}
}

// TestAdvClearRacesV1: Clear while other goroutines write and read other
// keys through both interfaces: a key written only before Clear is never
// served after it returns, and a key written after it is.
func TestAdvClearRacesV1(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		pc := mhaCfg
		pc.Pages = 64
		p := newPool(t, pc)
		src, _ := p.Alloc(8 * ps)
		fillRandom(t, p, src)
		dir := t.TempDir()
		s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, MaxBatchFileBytes: 1}, p)
		o := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p) // another process's view
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			dst, _ := p.Alloc(4 * ps)
			pg, _ := p.GetDataPage(src[0])
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				keys := []string{fmt.Sprint("w_", i), fmt.Sprint("x", i), fmt.Sprint("y_", i), fmt.Sprint("z", i)}
				_, _ = s.BatchSetV1(keys, src[:4*ps])
				_, _ = s.BatchGetV1(keys, dst)
				_ = s.Set(keys[0], pg)
				_, _ = o.BatchGetV1(keys, dst)
			}
		}()
		for round := range 20 {
			old := []string{fmt.Sprint("old_", round), fmt.Sprint("old", round)}
			if ok, err := s.BatchSetV1(old, src[4*ps:6*ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			pg, _ := p.GetDataPage(src[4*ps])
			if err := s.Set("o_"+old[1], pg); err != nil {
				t.Fatal(err)
			}
			if err := s.Clear(); err != nil {
				t.Fatal(err)
			}
			dst, _ := p.Alloc(2 * ps)
			for _, st := range []*Store{s, o} {
				if ok, err := st.BatchGetV1(old, dst); err != nil || ok[0] || ok[1] {
					t.Fatalf("round %d: BatchGetV1 of keys written before Clear = %v, %v", round, ok, err)
				}
				if st.Exists(old[0]) || st.Exists(old[1]) || st.Exists("o_"+old[1]) {
					t.Fatalf("round %d: Exists after Clear", round)
				}
			}
			if ok, err := s.BatchSetV1(old, src[6*ps:8*ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			for _, st := range []*Store{s, o} {
				if ok, err := st.BatchGetV1(old, dst); err != nil || !all(ok) || !samePages(t, p, dst[0], src[6*ps]) || !samePages(t, p, dst[ps], src[7*ps]) {
					t.Fatalf("round %d: BatchGetV1 after Clear and a new write = %v, %v", round, ok, err)
				}
			}
			_ = p.Free(dst)
		}
		close(stop)
		<-done
	})
}

// TestAdvSetOverSpecialFile: a special file planted under a key's
// old-format name is a miss, and a write of the key replaces it.
func TestAdvSetOverSpecialFile(t *testing.T) {
	for _, kind := range []string{"fifo", "symlink", "dir", "socket", "device"} {
		t.Run(kind, func(t *testing.T) {
			ps := mhaCfg.PageSize
			p, idx := randomPages(t, 2)
			page, _ := p.GetDataPage(idx[0])
			s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
			for _, k := range []string{"set", "batch"} {
				if !plant(t, kind, s.FilePath(k), len(page)) {
					return
				}
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

// putOver puts the file from in place of the file to: by copying its bytes
// into to (cp: the same inode, another content) when inPlace, else by
// renaming it over to.
func putOver(t *testing.T, from, to string, inPlace bool) {
	t.Helper()
	if !inPlace {
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
		return
	}
	data, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, data, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestAdvForeignFileOverOwn: another model's or another rank's batch file
// of the same shape and the same keys, renamed over one of this store's
// batch files that a live store has indexed, is never served by it.
func TestAdvForeignFileOverOwn(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		for _, copyInPlace := range []bool{false, true} {
			testForeignFileOverOwn(t, noWatch, copyInPlace)
		}
	})
}

func testForeignFileOverOwn(t *testing.T, noWatch, copyInPlace bool) {
	{
		ours := Config{ModelName: "m", TPRank: 0, TPSize: 2, NoWatch: noWatch}
		for _, other := range []Config{
			{ModelName: "m", TPRank: 1, TPSize: 2},
			{ModelName: "x", TPRank: 0, TPSize: 2},
			{ModelName: "m", TPRank: 0, TPSize: 2, PPRank: 1, PPSize: 2},
		} {
			ps := mhaCfg.PageSize
			p, idx := randomPages(t, 6)
			dir := t.TempDir()
			ours.Dir, other.Dir = dir, dir
			keys := []string{"a", "b"}
			live := newStore(t, ours, p)
			if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			o := newStore(t, other, p)
			if ok, err := o.BatchSetV1(keys, idx[2*ps:4*ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			mine, _ := live.Locate("a")
			theirs, _ := o.Locate("a")
			putOver(t, theirs.Path, mine.Path, copyInPlace)
			before := live.Stats().Mismatch
			dst := idx[4*ps:]
			ok, err := live.BatchGetV1(keys, dst)
			if err != nil {
				t.Fatal(err)
			}
			for i := range keys {
				if ok[i] && samePages(t, p, dst[i*ps], idx[(2+i)*ps]) {
					t.Errorf("%s over %s: live store served the other store's page of %s", o.suffix, live.suffix, keys[i])
				}
			}
			if live.Stats().Mismatch == before {
				t.Errorf("%s over %s: Stats.Mismatch not counted", o.suffix, live.suffix)
			}
			if live.Exists("a") {
				t.Errorf("%s over %s: Exists(a) after the read", o.suffix, live.suffix)
			}
			// Written again as this store's own, and served.
			if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
				t.Fatal(ok, err)
			}
			if ok, err := live.BatchGetV1(keys, dst); err != nil || !all(ok) || !samePages(t, p, dst[0], idx[0]) || !samePages(t, p, dst[ps], idx[ps]) {
				t.Errorf("%s over %s: BatchGetV1 after writing again = %v, %v", o.suffix, live.suffix, ok, err)
			}
		}
	}
}

// TestAdvTopDirReplacedNoLeak: Dir moved away and made again, over and
// over under a live store: every write lands at the path Dir, through
// both interfaces, and no descriptor accumulates.
func TestAdvTopDirReplacedNoLeak(t *testing.T) {
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

// TestAdvClearAfterDirReplaced: Clear after Dir was removed or moved away
// under a live store succeeds, and removes what the store wrote at the
// path Dir since.
func TestAdvClearAfterDirReplaced(t *testing.T) {
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

// TestAdvForeignClearThenWrite: after another store on the directory
// clears it, this store's BatchSetV1 of a key it held writes it again
// (it is no longer stored), and both stores serve the new page.
func TestAdvForeignClearThenWrite(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 4)
		dir := t.TempDir()
		a := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		b := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, p)
		keys := []string{"k", "k_1"}
		if ok, err := b.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
		if a.BatchExists(keys) != 2 || b.BatchExists(keys) != 2 {
			t.Fatal("setup: keys not found")
		}
		if err := a.Clear(); err != nil {
			t.Fatal(err)
		}
		if ok, err := b.BatchSetV1(keys, idx[2*ps:4*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
		for name, s := range map[string]*Store{"a": a, "b": b} {
			dst, _ := p.Alloc(2 * ps)
			if ok, err := s.BatchGetV1(keys, dst); err != nil || !all(ok) || !samePages(t, p, dst[0], idx[2*ps]) || !samePages(t, p, dst[ps], idx[3*ps]) {
				t.Errorf("%s: BatchGetV1 after a foreign Clear and a new write = %v, %v", name, ok, err)
			}
			_ = p.Free(dst)
		}
	})
}

// TestAdvAfterClose: every call after Close is ErrClosed or reports
// nothing stored, without a panic, and Close twice is ErrClosed.
func TestAdvAfterClose(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 1)
	s, err := New(Config{Dir: t.TempDir(), ModelName: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterMemPoolHost(p); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BatchSetV1([]string{"k"}, idx[:ps]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, p.PageBytes())
	for name, err := range map[string]error{
		"Set":        s.Set("k", page),
		"Get":        s.Get("k", page),
		"Clear":      s.Clear(),
		"Close":      s.Close(),
		"Register":   s.RegisterMemPoolHost(p),
		"BatchSet":   func() error { _, err := s.BatchSet([]string{"k"}, [][]byte{page}); return err }(),
		"BatchGet":   func() error { _, err := s.BatchGet([]string{"k"}, [][]byte{page}); return err }(),
		"BatchSetV1": func() error { _, err := s.BatchSetV1([]string{"k"}, idx[:ps]); return err }(),
		"BatchGetV1": func() error { _, err := s.BatchGetV1([]string{"k"}, idx[:ps]); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if s.Exists("k") || s.BatchExists([]string{"k"}) != 0 {
		t.Errorf("Exists after Close")
	}
	if _, ok := s.Locate("k"); ok {
		t.Errorf("Locate after Close")
	}
	_ = s.Stats()
}

// TestAdvForeignOverOwnBeforeRead: right after another store's file of
// the same shape and keys is renamed over one of this store's, before
// any read, the live store neither reports the keys stored nor skips them
// in BatchSetV1.
func TestAdvForeignOverOwnBeforeRead(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		// Renamed: a file copied in place (same inode) is caught when
		// read (TestAdvForeignFileOverOwn).
		testForeignOverOwnBeforeRead(t, noWatch)
	})
}

func testForeignOverOwnBeforeRead(t *testing.T, noWatch bool) {
	{
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 6)
		dir := t.TempDir()
		keys := []string{"a", "b"}
		live := newStore(t, Config{Dir: dir, ModelName: "m", TPSize: 2, NoWatch: noWatch}, p)
		if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
		o := newStore(t, Config{Dir: dir, ModelName: "m", TPRank: 1, TPSize: 2}, p)
		if ok, err := o.BatchSetV1(keys, idx[2*ps:4*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
		mine, _ := live.Locate("a")
		theirs, _ := o.Locate("a")
		if err := os.Rename(theirs.Path, mine.Path); err != nil {
			t.Fatal(err)
		}
		if live.Exists("a") {
			t.Errorf("Exists(a) = true over another rank's file")
		}
		before := live.Stats().Sets
		if ok, err := live.BatchSetV1(keys, idx[:2*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
		if live.Stats().Sets == before {
			t.Errorf("BatchSetV1 skipped keys held only by another rank's file")
		}
		dst := idx[4*ps:]
		if ok, err := live.BatchGetV1(keys, dst); err != nil || !all(ok) || !samePages(t, p, dst[0], idx[0]) || !samePages(t, p, dst[ps], idx[ps]) {
			t.Errorf("BatchGetV1 after writing again = %v, %v", ok, err)
		}
	}
}

// TestAdvFreshDeadTempsReclaimedAtNew: a temp file locked from birth that
// its writer left a moment ago (closed, unlocked: the writer died) goes at
// the next New, whatever its age, in Dir and in the V1 directory; a live
// writer's, locked, stays even when old.
func TestAdvFreshDeadTempsReclaimedAtNew(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	dead := []string{
		filepath.Join(dir, lockedTmpPrefix+"0123456789abcdef"+"-"+s.digest+s.suffix+tmpExt),
		filepath.Join(s.v1Dir, lockedTmpPrefix+"1123456789abcdef"+"-"+s.digest+s.suffix+tmpExt),
	}
	live := []string{
		filepath.Join(dir, lockedTmpPrefix+"2123456789abcdef"+"-"+s.digest+s.suffix+tmpExt),
		filepath.Join(s.v1Dir, lockedTmpPrefix+"3123456789abcdef"+"-"+s.digest+s.suffix+tmpExt),
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
