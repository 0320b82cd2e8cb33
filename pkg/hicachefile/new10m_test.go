//go:build linux

package hicachefile

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// BenchmarkNew10M builds a directory of 10 M pages, 80,000 batch files of
// 128 pages with SGLang-style keys (sha256 hex), then opens stores over it
// and reports New's time (s/New), the heap the store keeps per page
// (B/key), and the time of a full garbage collection with that store live
// (ns/GC): with a pointer-free index it should not grow with the pages.
// Pages are 64 bytes (8 tokens), not the seed's 512, so that the files fit
// in a 4 GB tmpfs the benchmark mounts when it runs as root (else they go
// to the default temp dir); the index holds the same per page either way.
// Building the directory takes a minute or two.
//
//	go test -run=NONE -bench=New10M -benchtime=3x -timeout=30m ./pkg/hicachefile
func BenchmarkNew10M(b *testing.B) {
	const files, per = 80000, 128
	dir := b.TempDir()
	if unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4g") == nil {
		b.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	}
	cfg := hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.Float16,
		PageSize: 8, LayerNum: 1, HeadNum: 1, HeadDim: 2, Pages: per}
	p := newPool(b, cfg)
	src, _ := p.Alloc(per * cfg.PageSize)
	fillRandom(b, p, src)
	sc := Config{Dir: dir, ModelName: "new10m", NoWatch: true}
	w := newStore(b, sc, p)
	keyOf := func(f, i int) string {
		var in [16]byte
		binary.LittleEndian.PutUint64(in[:], uint64(f))
		binary.LittleEndian.PutUint64(in[8:], uint64(i))
		h := sha256.Sum256(in[:])
		return hex.EncodeToString(h[:])
	}
	keys := make([]string, per)
	for f := range files {
		for i := range keys {
			keys[i] = keyOf(f, i)
		}
		if ok, err := w.BatchSetV1(keys, src); err != nil || !all(ok) {
			b.Fatal(err)
		}
	}
	_ = w.Close()
	var took, gc time.Duration
	var heap float64
	for b.Loop() {
		s, t, h := newMeasured(b, sc)
		b.StopTimer()
		took, heap = took+t, heap+h
		t1 := time.Now()
		runtime.GC()
		gc += time.Since(t1)
		if !s.Exists(keyOf(files-1, per-1)) || !s.Exists(keyOf(0, 0)) {
			b.Fatal("keys missing")
		}
		_ = s.Close()
		b.StartTimer()
	}
	b.ReportMetric(took.Seconds()/float64(b.N), "s/New")
	b.ReportMetric(heap/float64(b.N)/(files*per), "B/key")
	b.ReportMetric(float64(gc.Nanoseconds())/float64(b.N), "ns/GC")
}
