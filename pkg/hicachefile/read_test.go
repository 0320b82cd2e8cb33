package hicachefile

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestReadsAcrossManyFilesGetPagesWritten: calls whose keys span more than maxOpenFiles batch
// files, in random order with repeats, mixed with old-format keys and
// missing keys, get exactly the pages written, whatever the IO workers and
// DirectIO.
func TestReadsAcrossManyFilesGetPagesWritten(t *testing.T) {
	big := mhaCfg
	big.PageSize, big.LayerNum, big.HeadNum, big.HeadDim = 16, 4, 8, 128 // 256 KiB pages
	for _, large := range []bool{false, true} {
		for _, workers := range []int{1, 4} {
			for _, direct := range []bool{false, true} {
				t.Run(fmt.Sprintf("large=%v/workers=%d/direct=%v", large, workers, direct), func(t *testing.T) {
					pc, nv1, nold, perFile, maxQ := mhaCfg, 120, 20, 3, 200
					if large {
						pc, nv1, nold, perFile, maxQ = big, 60, 4, 20, 40
					}
					testReadsAcrossManyFiles(t, pc, nv1, nold, perFile, maxQ, workers, direct)
				})
			}
		}
	}
}

func testReadsAcrossManyFiles(t *testing.T, pc hostcache.Config, nv1, nold, perFile, maxQ, workers int, direct bool) {
	ps := pc.PageSize
	pc.Pages = nv1 + nold + maxQ + 8
	p := newPool(t, pc)
	src, err := p.Alloc((nv1 + nold) * ps)
	if err != nil {
		t.Fatal(err)
	}
	fillRandom(t, p, src)
	cfg := Config{Dir: t.TempDir(), ModelName: "m", IOWorkers: workers, DirectIO: direct,
		MaxBatchFileBytes: int64(perFile * p.PageBytes())}
	s := newStore(t, cfg, p)
	keys := make([]string, nv1+nold)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	// V1 pages in several calls, so that the files interleave.
	for lo := 0; lo < nv1; lo += 30 {
		if ok, err := s.BatchSetV1(keys[lo:min(nv1, lo+30)], src[lo*ps:min(nv1, lo+30)*ps]); err != nil || !all(ok) {
			t.Fatal(ok, err)
		}
	}
	for i := nv1; i < nv1+nold; i++ {
		pg, _ := p.GetDataPage(src[i*ps])
		if err := s.Set(keys[i], pg); err != nil {
			t.Fatal(err)
		}
	}
	dst, err := p.Alloc(maxQ * ps)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, uint64(workers)))
	for round := range 60 {
		n := 1 + r.IntN(maxQ)
		q := make([]string, n)
		want := make([]int, n) // source key, -1 for missing
		for j := range q {
			switch x := r.IntN(10); {
			case x == 0:
				q[j], want[j] = fmt.Sprintf("missing%d", j), -1
			case round%3 == 0 && j < nv1+nold:
				k := nv1 + nold - 1 - j%(nv1+nold) // reverse order
				q[j], want[j] = keys[k], k
			default:
				k := r.IntN(nv1 + nold)
				q[j], want[j] = keys[k], k
			}
		}
		ok, err := s.BatchGetV1(q, dst[:n*ps])
		if err != nil {
			t.Fatal(err)
		}
		for j := range q {
			if ok[j] != (want[j] >= 0) {
				t.Fatalf("round %d: key %d %q ok=%v want %v", round, j, q[j], ok[j], want[j] >= 0)
			}
			if ok[j] && !samePages(t, p, dst[j*ps], src[want[j]*ps]) {
				t.Fatalf("round %d: key %d %q wrong page", round, j, q[j])
			}
		}
	}
	if direct && pc.PageSize == 16 && s.Stats().DirectBytes == 0 {
		t.Error("DirectIO read nothing direct: the direct path went untested")
	}
}
