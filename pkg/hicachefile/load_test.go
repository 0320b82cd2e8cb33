//go:build linux

package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// evictPages writes back and drops from the page cache the pages of every
// file in dir, so that the next read of each goes to the device.
func evictPages(t testing.TB, dir string) {
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		fd, err := unix.Open(filepath.Join(dir, n.Name()), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		_ = unix.Fdatasync(fd)
		_ = unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
		_ = unix.Close(fd)
	}
}

// TestLoadCold loads a directory of batch files whose pages are not in the
// page cache (on a disk file system, read ahead by the load workers; on
// tmpfs, read as they come), among them a truncated file and a FIFO under
// batch file names, with one worker and with several, and through a
// Syscalls.Preadv seam (which reads one file at a time). Every way must
// find every intact file's key, skip the truncated file and count the
// FIFO, and none may hang on the FIFO.
func TestLoadCold(t *testing.T) {
	const files = 300
	cfg := seedCfg
	cfg.Pages = 1
	p := newPool(t, cfg)
	src, _ := p.Alloc(cfg.PageSize)
	fillRandom(t, p, src)
	sc := Config{Dir: t.TempDir(), ModelName: "cold", NoWatch: true}
	w := newStore(t, sc, p)
	for f := range files {
		if ok, err := w.BatchSetV1([]string{sglangKey("cold", f)}, src); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	// Spoil two files: key 0's truncated, key 1's replaced by a FIFO.
	var spoiled []string
	for i := range 2 {
		loc, ok := w.Locate(sglangKey("cold", i))
		if !ok {
			t.Fatal("no location for key", i)
		}
		spoiled = append(spoiled, loc.Path)
	}
	if err := os.Truncate(spoiled[0], 100); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(spoiled[1]); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(spoiled[1], 0o644); err != nil {
		t.Fatal(err)
	}
	seam := Syscalls{Preadv: preadvRaw}
	for _, c := range []struct {
		name    string
		workers int
		sys     Syscalls
	}{{"IOWorkers=1", 1, Syscalls{}}, {"IOWorkers=4", 4, Syscalls{}}, {"seam", 4, seam}} {
		t.Run(c.name, func(t *testing.T) {
			evictPages(t, w.v1Dir)
			cc := sc
			cc.IOWorkers, cc.Syscalls = c.workers, c.sys
			s := newStore(t, cc, p)
			for f := 2; f < files; f++ {
				if !s.Exists(sglangKey("cold", f)) {
					t.Fatalf("key %d not loaded", f)
				}
			}
			for i := range 2 {
				if s.Exists(sglangKey("cold", i)) {
					t.Fatalf("key %d of a spoiled file loaded", i)
				}
			}
			if st := s.Stats(); st.SkippedFiles != 1 || st.SpecialFiles != 1 {
				t.Fatalf("SkippedFiles %d, SpecialFiles %d; want 1 and 1", st.SkippedFiles, st.SpecialFiles)
			}
		})
	}
}

// BenchmarkNewReadAhead times New over 100,000 one-page batch files on the
// default (disk) directory, each file's pages dropped from the page cache
// before every New: serial reads one file at a time and waits for each
// (IOWorkers=1, reads through a Syscalls.Preadv seam, which turns read-ahead
// off: what New did before it read ahead); IOWorkers=1 and 8 read ahead.
// The three run in turn in each iteration; x-serial is the serial time over
// the time of each. cpu-s/New is the process's CPU time per New.
//
//	go test -run=NONE -bench=NewReadAhead -benchtime=1x ./pkg/hicachefile
func BenchmarkNewReadAhead(b *testing.B) {
	const files = 100000
	cfg := seedCfg
	cfg.Pages = 1
	p := newPool(b, cfg)
	src, _ := p.Alloc(cfg.PageSize)
	sc := Config{Dir: b.TempDir(), ModelName: "ahead", NoWatch: true}
	w := newStore(b, sc, p)
	for f := range files {
		if ok, err := w.BatchSetV1([]string{sglangKey("ahead", f)}, src); err != nil || !ok[0] {
			b.Fatal(err)
		}
	}
	ways := []struct {
		name    string
		workers int
		sys     Syscalls
	}{{"serial", 1, Syscalls{Preadv: preadvRaw}}, {"IOWorkers=1", 1, Syscalls{}}, {"IOWorkers=8", 8, Syscalls{}}}
	took := make([]time.Duration, len(ways))
	cpu := make([]time.Duration, len(ways))
	for b.Loop() {
		for i, way := range ways {
			b.StopTimer()
			evictPages(b, w.v1Dir)
			b.StartTimer()
			c := sc
			c.IOWorkers, c.Syscalls = way.workers, way.sys
			u0, t0 := cpuTime(), time.Now()
			s, err := New(c)
			if err != nil {
				b.Fatal(err)
			}
			took[i] += time.Since(t0)
			cpu[i] += cpuTime() - u0
			b.StopTimer()
			if !s.Exists(sglangKey("ahead", files-1)) {
				b.Fatal("last key missing")
			}
			_ = s.Close()
			b.StartTimer()
		}
	}
	for i, way := range ways {
		b.ReportMetric(took[i].Seconds()/float64(b.N), way.name+"-s/New")
		b.ReportMetric(cpu[i].Seconds()/float64(b.N), way.name+"-cpu-s/New")
		if i > 0 {
			b.ReportMetric(float64(took[0])/float64(took[i]), way.name+"-x-serial")
		}
	}
}

// TestDedupe: load reads a name given twice once, in first-seen order.
func TestDedupe(t *testing.T) {
	got := dedupe([]string{"a", "b", "a", "c", "b"})
	if !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("dedupe = %v", got)
	}
	if got := fmt.Sprint(dedupe(nil)); got != "[]" {
		t.Fatalf("dedupe(nil) = %s", got)
	}
}

// TestLoadColdFDLimit: a load worker holding files open for read-ahead
// that runs out of descriptors reads and closes them, and opens the file
// again, rather than give up on it. The seam allows 5 open files.
func TestLoadColdFDLimit(t *testing.T) {
	const files, limit = 30, 5
	cfg := seedCfg
	cfg.Pages = 1
	p := newPool(t, cfg)
	src, _ := p.Alloc(cfg.PageSize)
	sc := Config{Dir: t.TempDir(), ModelName: "fd", NoWatch: true}
	w := newStore(t, sc, p)
	for f := range files {
		if ok, err := w.BatchSetV1([]string{sglangKey("fd", f)}, src); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
	}
	// The read-ahead this test is about happens only for files whose tails
	// are out of the page cache when the store loads them. Another process
	// can bring them back in between (the kernel reads ahead for anyone), so
	// a load that found every tail cached is tried again, a few times.
	sc.IOWorkers = 1
	for try := 1; ; try++ {
		evictPages(t, w.v1Dir)
		// A descriptor limit of limit: an open past it fails with EMFILE.
		open := map[int]bool{}
		fs := newErrorFS().
			fail(opOpenat, func(*sysCall) bool { return len(open) >= limit }, unix.EMFILE).
			after(opOpenat, func(c *sysCall, err error) {
				if err == nil {
					open[c.ret] = true
				}
			}).
			before(opClose, func(c *sysCall) { delete(open, c.fd) })
		sc.Syscalls = fs.syscalls()
		s, err := New(sc)
		if err != nil {
			t.Fatal(err)
		}
		for f := range files {
			if !s.Exists(sglangKey("fd", f)) {
				t.Fatalf("key %d not loaded", f)
			}
		}
		st, held := s.Stats(), fs.fired() > 0 || s.noNowait.Load()
		_ = s.Close()
		if st.Errors != 0 {
			t.Fatalf("%d errors", st.Errors)
		}
		if held {
			return
		}
		if try == 5 {
			t.Fatal("no open was refused: the worker never held files open for read-ahead")
		}
	}
}
