//go:build linux

package torture

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// churnArgs are the arguments of the churn child: the store whose reads
// are checked (Clearer false), or the other process that writes the same
// keys and clears the directory under it (Clearer true).
type churnArgs struct {
	Store    storeArgs
	Clearer  bool
	Keys     int // the key space: keyNames(Keys)
	HeadDim  int
	Batch    int // most keys one call takes
	Writers  int
	Readers  int
	Duration time.Duration
	Seed     uint64
}

// churnResult is what a churn child counted.
type churnResult struct {
	Writes, PagesWritten, WriteErrors int
	Reads, Served, Wrong, ReadErrors  int
	Clears, ClearErrors               int
	Corrupt, Evicted, Hits            int64 // the store's Stats at the end
	WrongPages, BadErrors             []string
}

// churnChild runs one side of the churn spec for a.Duration. The store
// side runs a.Writers goroutines writing and a.Readers reading one store
// with BatchSetV1 and BatchGetV1 (and BatchExists now and then), while
// its files are evicted (MaxBytes) and cleared by itself; every page
// served is checked against its key's stamp. The clearer side writes the
// same keys from its own store and clears the directory every few
// milliseconds. Every page of a key carries the same stamp, so any page
// served under a key that is not that key's is wrong, wherever it came
// from.
func churnChild(enc []byte) (any, error) {
	var a churnArgs
	if err := json.Unmarshal(enc, &a); err != nil {
		return nil, err
	}
	keys := keyNames(a.Keys)
	slots := (a.Writers + a.Readers + 1) * a.Batch
	pool, err := hostcache.New(tortureShape(a.HeadDim, slots).Config())
	if err != nil {
		return nil, err
	}
	s, err := hicachefile.New(a.Store.config())
	if err != nil {
		return nil, err
	}
	if err := s.RegisterMemPoolHost(pool); err != nil {
		return nil, err
	}
	owner := a.Store.Model
	pages := make([][]byte, a.Keys)
	for i, k := range keys {
		pages[i] = make([]byte, pool.PageBytes())
		stamp(pages[i], owner, k, 0, 0)
	}
	signalReady()

	var (
		res  churnResult
		rmu  sync.Mutex
		stop atomic.Bool
	)
	note := func(list *[]string, format string, args ...any) {
		rmu.Lock()
		defer rmu.Unlock()
		if len(*list) < 5 {
			*list = append(*list, fmt.Sprintf(format, args...))
		}
	}
	// pick returns a random run of keys (a batch as SGLang's hash chain
	// makes them) or, one time in four, random keys.
	pick := func(r *rand.Rand) []int {
		n := 1 + r.IntN(a.Batch)
		out := make([]int, n)
		if r.IntN(4) == 0 {
			copy(out, r.Perm(a.Keys)[:n])
			return out
		}
		start := r.IntN(a.Keys - n + 1)
		for j := range out {
			out[j] = start + j
		}
		return out
	}
	names := func(pick []int) []string {
		out := make([]string, len(pick))
		for j, i := range pick {
			out[j] = keys[i]
		}
		return out
	}
	deadline := time.Now().Add(a.Duration)
	var wg sync.WaitGroup
	slot := 0
	for w := range a.Writers {
		at, err := pool.Alloc(a.Batch * pageSize)
		if err != nil {
			return nil, err
		}
		slot++
		wg.Go(func() {
			r := rand.New(rand.NewPCG(a.Seed, uint64(w)))
			for time.Now().Before(deadline) && !stop.Load() {
				p := pick(r)
				for j, i := range p {
					if err := pool.SetFromFlatDataPage(at[j*pageSize], pages[i]); err != nil {
						note(&res.BadErrors, "SetFromFlatDataPage: %v", err)
						stop.Store(true)
						return
					}
				}
				ok, err := s.BatchSetV1(names(p), at[:len(p)*pageSize])
				rmu.Lock()
				res.Writes++
				res.PagesWritten += countTrue(ok)
				if err != nil {
					// A Clear may take a write's temp file: the write fails,
					// which is not what this spec checks.
					res.WriteErrors++
				}
				rmu.Unlock()
			}
		})
	}
	readers := a.Readers
	if a.Clearer {
		readers = 0
	}
	for rd := range readers {
		at, err := pool.Alloc(a.Batch * pageSize)
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			r := rand.New(rand.NewPCG(a.Seed, 100+uint64(rd)))
			scratch := make([]byte, pool.PageBytes())
			for i := 0; time.Now().Before(deadline) && !stop.Load(); i++ {
				// Whole batches mostly: their keys lie in several files,
				// each resolved from its id only when its turn to be read
				// comes, which leaves the churn time to give the id to
				// another file.
				p := r.Perm(a.Keys)[:a.Batch]
				if i%4 == 0 {
					p = pick(r)
				}
				bk := names(p)
				if i%8 == 0 {
					s.BatchExists(bk)
				}
				ok, err := s.BatchGetV1(bk, at[:len(bk)*pageSize])
				if err != nil {
					note(&res.BadErrors, "BatchGetV1 of %d keys: %v", len(bk), err)
				}
				served, wrong := 0, 0
				for j := range ok {
					if !ok[j] {
						continue
					}
					served++
					got, err := pool.GetDataPage(at[j*pageSize])
					if err != nil {
						note(&res.BadErrors, "GetDataPage: %v", err)
						continue
					}
					if gen, good := verify(got, scratch, owner, bk[j]); !good || gen != 0 {
						wrong++
						note(&res.WrongPages, "key %s: %s", bk[j], describe(got))
					}
				}
				rmu.Lock()
				res.Reads++
				res.Served += served
				res.Wrong += wrong
				if err != nil {
					res.ReadErrors++
				}
				rmu.Unlock()
			}
		})
	}
	// The clears: the store's own, every 5 to 40 ms; the clearer's, every
	// 2 to 10 ms.
	r := rand.New(rand.NewPCG(a.Seed, 7))
	lo, span := 5, 35
	if a.Clearer {
		lo, span = 2, 8
	}
	for time.Now().Before(deadline) && !stop.Load() {
		time.Sleep(time.Duration(lo+r.IntN(span)) * time.Millisecond)
		err := s.Clear()
		rmu.Lock()
		res.Clears++
		if err != nil {
			res.ClearErrors++
		}
		rmu.Unlock()
	}
	wg.Wait()
	st := s.Stats()
	res.Corrupt, res.Evicted, res.Hits = st.Corrupt, st.Evicted, st.Hits
	return res, s.Close()
}

// One store read and written by several goroutines while its
// batch files are evicted, cleared by itself and cleared by another
// process, so that file ids are freed and taken again between a read's
// lookup and its use of the file. No call panics or fails, no page served
// is another key's, and no file that was only removed counts as corrupt.
var _ = Describe("File churn", Serial, Label("torture"), func() {
	It("serves only each key's own page while its files are evicted and cleared by itself and by another process", func() {
		const (
			nKeys   = 96
			headDim = 8 // 512-byte pages
			batch   = 16
		)
		pageBytes := int64(64 * headDim)
		dir := filepath.Join(GinkgoT().TempDir(), "churn")
		store := storeArgs{Dir: dir, Model: "churn/model", TPSize: 1,
			MaxBytes: 16 * pageBytes, MaxBatchFileBytes: 2 * pageBytes}
		seed := uint64(GinkgoRandomSeed())
		main := startChild("churn", churnArgs{Store: store, Keys: nKeys, HeadDim: headDim, Batch: batch,
			Writers: 3, Readers: 3, Duration: duration(), Seed: seed})
		Expect(main.waitReady(time.Minute)).To(BeTrue(), "the churned store did not open: %s", main.stderr.String())
		other := startChild("churn", churnArgs{Store: store, Clearer: true, Keys: nKeys, HeadDim: headDim, Batch: batch,
			Writers: 1, Duration: duration(), Seed: seed + 1})
		var res, oth churnResult
		main.result(duration()+3*time.Minute, &res)
		other.result(duration()+3*time.Minute, &oth)
		AddReportEntry("file churn", fmt.Sprintf(
			"%s, 3 writers and 3 readers on one store (MaxBytes %d pages, %d-page batch files), its own Clear every 5-40 ms, another process writing and clearing every 2-10 ms: "+
				"%d reads, %d pages served and checked, %d wrong, %d read errors; %d writes (%d pages, %d failed), %d own Clears, %d evicted, %d corrupt; the other process %d Clears, %d writes",
			duration(), store.MaxBytes/pageBytes, store.MaxBatchFileBytes/pageBytes,
			res.Reads, res.Served, res.Wrong, res.ReadErrors, res.Writes, res.PagesWritten, res.WriteErrors, res.Clears, res.Evicted, res.Corrupt,
			oth.Clears, oth.Writes))
		Expect(res.WrongPages).To(BeEmpty(), "pages served under keys they are not of")
		Expect(res.Wrong).To(BeZero())
		Expect(res.BadErrors).To(BeEmpty(), "calls that failed")
		Expect(res.ClearErrors+oth.ClearErrors).To(BeZero(), "Clears that failed")
		Expect(res.Served).To(BeNumerically(">", 0), "no page was served: the churn left nothing to read")
		Expect(res.PagesWritten).To(BeNumerically(">", 0), "nothing was written")
		Expect(res.Evicted).To(BeNumerically(">", 0), "nothing was evicted")
		Expect(res.Clears).To(BeNumerically(">", 0))
		Expect(oth.Clears).To(BeNumerically(">", 0))
		Expect(res.Corrupt).To(BeZero(), "Stats.Corrupt: no file was damaged, only evicted or removed")
	})
})
