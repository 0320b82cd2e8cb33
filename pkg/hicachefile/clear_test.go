//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestClearRemovesEveryKeyShape: after Clear, live or after a reopen, no key written
// through either interface exists or is served, whatever the key and the
// naming (MHA, MLA, unnamed model, PP > 1, a model name with '/'), and a
// new write of the key is served afterwards.
func TestClearRemovesEveryKeyShape(t *testing.T) {
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

// TestClearRacingWritesAndReads: Clear while other goroutines write and read other
// keys through both interfaces: a key written only before Clear is never
// served after it returns, and a key written after it is.
func TestClearRacingWritesAndReads(t *testing.T) {
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

// TestWriteAfterForeignClearRewrites: after another store on the directory
// clears it, this store's BatchSetV1 of a key it held writes it again
// (it is no longer stored), and both stores serve the new page.
func TestWriteAfterForeignClearRewrites(t *testing.T) {
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

// TestClearRacingSameKeysServesNoStalePage: while one goroutine writes keys with pages B
// (through a second store of the same identity, temp files made by name),
// the main one writes them with pages A and Clears: after Clear returns,
// no store serves an A page, only B pages or misses.
func TestClearRacingSameKeysServesNoStalePage(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		pc := mhaCfg
		pc.Pages = 64
		p := newPool(t, pc)
		const nk = 4
		srcA, _ := p.Alloc(nk * ps)
		srcB, _ := p.Alloc(nk * ps)
		fillRandom(t, p, srcA)
		fillRandom(t, p, srcB)
		dir := t.TempDir()
		cfg := Config{Dir: dir, ModelName: "m", NoWatch: noWatch, MaxBatchFileBytes: 1, Syscalls: newErrorFS().refuseTmpfile().syscalls()}
		s := newStore(t, cfg, p)
		o := newStore(t, cfg, p)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				keys := make([]string, nk)
				for j := range keys {
					keys[j] = fmt.Sprintf("r%d_k%d", i%50, j)
				}
				_, _ = o.BatchSetV1(keys, srcB)
			}
		}()
		dst, _ := p.Alloc(nk * ps)
		for round := range 100 {
			keys := make([]string, nk)
			for j := range keys {
				keys[j] = fmt.Sprintf("r%d_k%d", round%50, j)
			}
			if _, err := s.BatchSetV1(keys, srcA); err != nil {
				t.Fatal(err)
			}
			if err := s.Clear(); err != nil {
				t.Fatal(err)
			}
			for _, st := range []*Store{s, o} {
				ok, err := st.BatchGetV1(keys, dst)
				if err != nil {
					t.Fatal(err)
				}
				for j := range keys {
					if ok[j] && samePages(t, p, dst[j*ps], srcA[j*ps]) {
						t.Fatalf("round %d: %s served a page written before Clear", round, keys[j])
					}
				}
			}
		}
		close(stop)
		<-done
	})
}

// TestClearRacingUnnamedWrite: a Clear, this store's own or another
// process's of the same identity, runs while an unnamed batch file is
// being filled or right after its link. A page written before the Clear
// began is never served after it returns; the write that overlaps it may
// land or not, but the store never holds as stored a file that is not on
// disk, and what it serves is the page written.
func TestClearRacingUnnamedWrite(t *testing.T) {
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

// TestClearDuringWatchOverflowLeavesNoDeadFile: another process's Clear removes this
// store's batch file right after its link, while the watcher's queue is
// full (the removal's event is dropped), and another call of this store
// drains the overflow, lists the directory and finds the file gone, all
// before the commit adds the file to the index. The index must not be
// left holding the removed file.
func TestClearDuringWatchOverflowLeavesNoDeadFile(t *testing.T) {
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

// TestClearForgetsUnderscoreKeys: a key holding '_' written through the
// old interface is gone after Clear, served stale through neither
// interface, and Clear removes SGLang's temp files of the store's names.
func TestClearForgetsUnderscoreKeys(t *testing.T) {
	p, idx := randomPages(t, 2)
	ps := mhaCfg.PageSize
	dir := t.TempDir()
	s := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
	before, _ := p.GetDataPage(idx[0])
	keys := []string{"req42_page_7", "old_key_1"}
	for _, k := range keys {
		if err := s.Set(k, before); err != nil {
			t.Fatal(err)
		}
	}
	sgTmp := filepath.Join(dir, "old_key_1_m_0_1.bin.tmp.4242.139872.0123456789abcdef0123456789abcdef")
	if err := os.WriteFile(sgTmp, before, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Clear(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sgTmp); !os.IsNotExist(err) {
		t.Errorf("SGLang's temp file survived Clear: %v", err)
	}
	for _, k := range keys {
		if s.Exists(k) {
			t.Errorf("Exists(%q) = true after Clear", k)
		}
	}
	// Written again with new bytes, both interfaces serve the new bytes.
	after, _ := p.GetDataPage(idx[ps])
	if err := s.Set(keys[0], after); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(after))
	if err := s.Get(keys[0], got); err != nil || !bytes.Equal(got, after) {
		t.Errorf("Get(%q) after Clear and Set = %v, stale %v", keys[0], err, bytes.Equal(got, before))
	}
	if ok, err := s.BatchSetV1(keys[1:], idx[ps:]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	dst, _ := p.Alloc(ps)
	if ok, err := s.BatchGetV1(keys[1:], dst); err != nil || !ok[0] {
		t.Fatalf("BatchGetV1 = %v, %v", ok, err)
	}
	if !samePages(t, p, dst[0], idx[ps]) {
		t.Errorf("BatchGetV1(%q) after Clear served the page from before it", keys[1])
	}
}
