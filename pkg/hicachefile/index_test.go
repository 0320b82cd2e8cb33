package hicachefile

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLookupAfterConcurrentRefresh: a lookup that misses waits for the
// directory scan another goroutine is running. When that scan loads the
// page, the lookup must find it, although its own refresh then has nothing
// left to scan. The test plays the other goroutine: it holds the scan lock,
// waits until BatchGetV1 has missed and is blocked on the lock, then does
// the scan's work by hand.
func TestLookupAfterConcurrentRefresh(t *testing.T) {
	p := newPool(t, mhaCfg)
	cfg := Config{Dir: t.TempDir(), ModelName: "m"}
	reader := newStore(t, cfg, p)
	writer := newStore(t, cfg, p)
	idx, _ := p.Alloc(mhaCfg.PageSize)
	fillRandom(t, p, idx)
	if ok, err := writer.BatchSetV1([]string{"k"}, idx); err != nil || !ok[0] {
		t.Fatal(ok, err)
	}
	loc, _ := writer.Locate("k")

	x := &reader.idx
	x.scan.Lock()
	done := make(chan []bool)
	go func() {
		ok, _ := reader.BatchGetV1([]string{"k"}, idx)
		done <- ok
	}()
	for reader.Stats().Gets == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // BatchGetV1 has missed and waits for the scan lock

	// The other goroutine's scan: load the new file, note the mtime.
	var st unix.Stat_t
	if err := unix.Fstat(reader.v1fd, &st); err != nil {
		t.Fatal(err)
	}
	name := loc.Path[len(reader.v1Dir)+1:]
	entries, fp, err := reader.loadIndex(name)
	if err != nil {
		t.Fatal(err)
	}
	x.mu.Lock()
	for _, e := range entries {
		x.entries[e.key] = location{file: name, off: e.off, length: e.length, crc: e.crc, fp: fp}
	}
	x.files[name] = []string{"k"}
	x.mtime = st.Mtim
	x.mu.Unlock()
	x.scan.Unlock()

	if ok := <-done; !ok[0] {
		t.Fatal("BatchGetV1 missed a page that the index held when its lookup retried")
	}
}

