//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"

	"golang.org/x/sys/unix"
)

// TestBatchSetV1Faults fails each successive system call of a BatchSetV1
// that spans four batch files, until the call succeeds. Every failing run
// must return the injected error, report a prefix of whole chunks, leave no
// temp file, and leave on disk exactly the chunks it reported, each readable
// byte for byte by a store without faults.
func TestBatchSetV1Faults(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("IOWorkers=%d", workers), func(t *testing.T) { testBatchSetV1Faults(t, workers) })
	}
}

func testBatchSetV1Faults(t *testing.T, workers int) {
	const keysN, perFile = 10, 3
	cfg, p, keys, src, dst := faultFixture(t, keysN)
	for n := int64(1); ; n++ {
		dir := t.TempDir()
		f := failNthCall(n)
		s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(perFile * p.PageBytes()),
			IOWorkers: workers, Sync: true, Syscalls: f.syscalls()}, p)
		ok, err := s.BatchSetV1(keys, src)
		if f.fired() == 0 {
			if err != nil || !all(ok) {
				t.Fatalf("call %d: no fault injected, got %v, %v", n, ok, err)
			}
			t.Logf("BatchSetV1 succeeded after %d injected faults", n-1)
			return
		}
		if !errors.Is(err, unix.EIO) {
			t.Fatalf("call %d: err = %v, want the injected EIO", n, err)
		}
		stored := 0
		for stored < keysN && ok[stored] {
			stored++
		}
		for i := stored; i < keysN; i++ {
			if ok[i] {
				t.Fatalf("call %d: ok = %v is not a prefix", n, ok)
			}
		}
		if stored%perFile != 0 {
			t.Fatalf("call %d: %d keys stored, not whole chunks of %d", n, stored, perFile)
		}
		if left := tempFiles(t, dir); len(left) > 0 {
			t.Fatalf("call %d: temp files left: %v", n, left)
		}
		clean := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
		if got := clean.BatchExists(keys); got != stored {
			t.Fatalf("call %d: %d keys on disk, %d reported stored", n, got, stored)
		}
		got, err := clean.BatchGetV1(keys[:stored], dst[:stored*cfg.PageSize])
		if err != nil || !all(got) {
			t.Fatalf("call %d: reading back the stored keys: %v, %v", n, got, err)
		}
		for i := range stored {
			if !samePages(t, p, src[i*cfg.PageSize], dst[i*cfg.PageSize]) {
				t.Fatalf("call %d: page %d differs", n, i)
			}
		}
		if st := clean.Stats(); st.SkippedFiles != 0 {
			t.Fatalf("call %d: %d files on disk fail their checks", n, st.SkippedFiles)
		}
	}
}

// TestBatchGetV1Faults fails each successive system call of a store that
// opens a directory of batch files and reads them back, until it succeeds.
// Every key reported true must hold exactly its page; a fault may only turn
// keys false.
func TestBatchGetV1Faults(t *testing.T) {
	const keysN, perFile = 10, 3
	cfg, p, keys, src, dst := faultFixture(t, keysN)
	dir := t.TempDir()
	w := newStore(t, Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(perFile * p.PageBytes())}, p)
	if ok, err := w.BatchSetV1(keys, src); err != nil || !all(ok) {
		t.Fatalf("BatchSetV1 = %v, %v", ok, err)
	}
	zero := p.GetDummyFlatDataPage()
	for n := int64(1); ; n++ {
		for i := range keysN {
			if err := p.SetFromFlatDataPage(dst[i*cfg.PageSize], zero); err != nil {
				t.Fatal(err)
			}
		}
		f := failNthCall(n)
		s := newStore(t, Config{Dir: dir, ModelName: "m", IOWorkers: 2, Syscalls: f.syscalls()}, p)
		ok, err := s.BatchGetV1(keys, dst)
		if err != nil {
			t.Fatalf("call %d: BatchGetV1 returned %v; a fault must only make keys false", n, err)
		}
		for i := range keysN {
			if ok[i] && !samePages(t, p, src[i*cfg.PageSize], dst[i*cfg.PageSize]) {
				t.Fatalf("call %d: key %d reported true with wrong bytes", n, i)
			}
		}
		if f.fired() == 0 {
			if !all(ok) {
				t.Fatalf("call %d: no fault injected, got %v", n, ok)
			}
			t.Logf("BatchGetV1 succeeded after %d injected faults", n-1)
			return
		}
	}
}

// TestSetFaults fails each successive system call of Set until it succeeds:
// the key's file is either absent or whole, and no temp file is left.
func TestSetFaults(t *testing.T) {
	value := bytes.Repeat([]byte("page"), 256)
	for n := int64(1); ; n++ {
		dir := t.TempDir()
		f := failNthCall(n)
		s := newStore(t, Config{Dir: dir, ModelName: "m", Sync: true, Syscalls: f.syscalls()}, nil)
		err := s.Set("key", value)
		if left := tempFiles(t, dir); len(left) > 0 {
			t.Fatalf("call %d: temp files left: %v", n, left)
		}
		data, rerr := os.ReadFile(s.FilePath("key"))
		switch {
		case f.fired() == 0:
			if err != nil || !bytes.Equal(data, value) {
				t.Fatalf("call %d: no fault injected, got %v", n, err)
			}
			return
		case !errors.Is(err, unix.EIO):
			t.Fatalf("call %d: err = %v, want the injected EIO", n, err)
		case rerr == nil && !bytes.Equal(data, value):
			t.Fatalf("call %d: a partial file is visible under the final name", n)
		}
	}
}

// TestUnnamedWriteFaultsLeakNoDescriptor fails each successive system call of a
// BatchSetV1 that spans four batch files, written with no name, until the
// call succeeds: no failing run may leave a descriptor open (an unnamed
// file left open is also its disk space, held until the process exits).
// That includes the files after a failed link, written but never linked,
// which have no name for a cleanup to find.
func TestUnnamedWriteFaultsLeakNoDescriptor(t *testing.T) {
	for _, workers := range []int{1, 2} {
		for _, sync := range []bool{false, true} {
			t.Run(fmt.Sprintf("IOWorkers=%d/Sync=%v", workers, sync), func(t *testing.T) {
				const keysN, perFile = 10, 3
				_, p, keys, src, _ := faultFixture(t, keysN)
				base := shmDir(t) // fsync costs nothing on tmpfs
				for n := int64(1); ; n++ {
					dir := filepath.Join(base, strconv.Itoa(int(n)))
					f := failNthCall(n)
					before := openFDs(t)
					s, err := New(Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(perFile * p.PageBytes()),
						IOWorkers: workers, Sync: sync, Syscalls: f.syscalls()})
					if err != nil {
						if f.fired() == 0 {
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
					if f.fired() == 0 {
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

// TestLinkErrorsLeakNoDescriptor: the n-th link of a BatchSetV1 that spans
// four unnamed batch files fails with each error a link can return: a
// name taken (drawn again), links refused (written again under a temp
// name), the directory gone, or an I/O error. Every run leaves no
// descriptor open, and the keys it reports stored are found by another
// store.
func TestLinkErrorsLeakNoDescriptor(t *testing.T) {
	for _, errno := range []unix.Errno{unix.EEXIST, unix.EPERM, unix.EINVAL, unix.EOPNOTSUPP, unix.ENOENT, unix.EIO} {
		t.Run(errno.Error(), func(t *testing.T) {
			const keysN, perFile = 10, 3
			_, p, keys, src, _ := faultFixture(t, keysN)
			base := shmDir(t)
			for n := 1; n <= 8; n++ {
				dir := filepath.Join(base, strconv.Itoa(n))
				sys := newErrorFS().fail(opLinkat, nth(int64(n)), errno).syscalls()
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

// TestFailedChunksNeverVisible: chunks after a failed one are never
// visible, not even for a moment: a concurrent BatchSetV1 of one of their
// keys that reports true has stored the key, found by this store and by a
// fresh one.
func TestFailedChunksNeverVisible(t *testing.T) {
	ps := mhaCfg.PageSize
	p, idx := randomPages(t, 3)
	dir := t.TempDir()
	var s *Store
	var innerOK []bool
	var innerErr error
	var fired atomic.Bool
	sys := newErrorFS().fail(opPwritev, func(c *sysCall) bool {
		// chunk 0's index+trailer write: it holds key "k0" and the magic
		last := c.iovs[len(c.iovs)-1]
		if bytes.Contains(last, []byte(batchfile.Magic)) && bytes.Contains(last, []byte("k0")) && !fired.Swap(true) {
			deadline := time.Now().Add(300 * time.Millisecond)
			for { // wait until chunk 1 is in the index
				if _, ok := s.Locate("k1"); ok || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			// another goroutine of the same process stores k1 meanwhile
			innerOK, innerErr = s.BatchSetV1([]string{"k1"}, idx[2*ps:])
			return true // and chunk 0's write fails
		}
		return false
	}, unix.EIO).syscalls()
	s = newStore(t, Config{Dir: dir, ModelName: "m", IOWorkers: 2, MaxBatchFileBytes: int64(p.PageBytes()), Syscalls: sys}, p)
	ok, err := s.BatchSetV1([]string{"k0", "k1"}, idx[:2*ps])
	if err == nil || ok[0] || ok[1] {
		t.Fatalf("setup: outer = %v %v", ok, err)
	}
	if innerErr != nil || !innerOK[0] {
		t.Fatalf("setup: inner = %v %v", innerOK, innerErr)
	}
	if !s.Exists("k1") || !onDisk(t, dir, p, "k1") {
		t.Errorf("BatchSetV1([k1]) reported true, but k1 is not stored: Exists=%v onDisk=%v",
			s.Exists("k1"), onDisk(t, dir, p, "k1"))
	}
}

// TestBatchSetV1FailedChunk makes creating batch files fail, so that the
// first chunk to write fails: the call returns the error, and the failed
// chunk and every later entry are false, while a key before it that already
// existed stays true. Nothing panics, and the unwritten pages are misses.
func TestBatchSetV1FailedChunk(t *testing.T) {
	var failCreate atomic.Bool
	sys := newErrorFS().fail(opOpenat, func(c *sysCall) bool { // creating a file fails while failCreate
		return failCreate.Load() && (c.flags&unix.O_CREAT != 0 || c.flags&unix.O_TMPFILE == unix.O_TMPFILE)
	}, unix.ENOSPC).syscalls()
	p := newPool(t, mhaCfg)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m", Syscalls: sys}, p)
	idx, _ := p.Alloc(3 * mhaCfg.PageSize)
	fillRandom(t, p, idx)
	page, _ := p.GetDataPage(idx[0])
	if err := s.Set("old", page); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BatchSetV1([]string{"v"}, idx[:mhaCfg.PageSize]); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	failCreate.Store(true)

	ok, err := s.BatchSetV1([]string{"v", "new1", "new2"}, idx)
	if !errors.Is(err, unix.ENOSPC) || !bytes.Equal(bools(ok), bools([]bool{true, false, false})) {
		t.Fatalf("BatchSetV1 = %v, %v; want [true false false] and ENOSPC", ok, err)
	}
	ok, err = s.BatchSetV1([]string{"new1", "v"}, idx[:2*mhaCfg.PageSize])
	if err == nil || ok[0] || ok[1] {
		t.Fatalf("BatchSetV1 = %v, %v; want every entry from the failed chunk on false", ok, err)
	}
	if st := s.Stats(); st.Errors == 0 {
		t.Fatalf("Stats = %+v, want errors counted", st)
	}
	ok, err = s.BatchGetV1([]string{"v", "old", "new1"}, idx)
	if err != nil || !ok[0] || !ok[1] || ok[2] {
		t.Fatalf("BatchGetV1 = %v, %v; want [true true false]", ok, err)
	}
}

func bools(b []bool) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		if v {
			out[i] = 1
		}
	}
	return out
}
