//go:build linux

package torture

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// crashArgs are the arguments of the crash child.
type crashArgs struct {
	Store   storeArgs
	Keys    int // the key space: keyNames(Keys)
	HeadDim int // the pool's pages are 64*HeadDim bytes
	Batch   int // most keys one write takes
	Seed    uint64
}

// crashChild writes stamped pages of its key space through both interfaces
// until it is killed: BatchSetV1 of random batches, BatchSet and Set. It
// reads some back as it goes, and exits with an error on a wrong page.
func crashChild(enc []byte) (any, error) {
	var a crashArgs
	if err := json.Unmarshal(enc, &a); err != nil {
		return nil, err
	}
	keys := keyNames(a.Keys)
	pool, err := hostcache.New(tortureShape(a.HeadDim, a.Keys+a.Batch).Config())
	if err != nil {
		return nil, err
	}
	// Key i lives in page i, stamped once; the pages after them are where
	// reads land.
	idx, err := pool.Alloc((a.Keys + a.Batch) * pageSize)
	if err != nil {
		return nil, err
	}
	flat := make([][]byte, a.Keys)
	for i, k := range keys {
		flat[i] = make([]byte, pool.PageBytes())
		stamp(flat[i], a.Store.Model, k, 0, 0)
		if err := pool.SetFromFlatDataPage(idx[i*pageSize], flat[i]); err != nil {
			return nil, err
		}
	}
	readAt := idx[a.Keys*pageSize:]
	s, err := hicachefile.New(a.Store.config())
	if err != nil {
		return nil, err
	}
	if err := s.RegisterMemPoolHost(pool); err != nil {
		return nil, err
	}
	signalReady()

	r := rand.New(rand.NewPCG(a.Seed, uint64(os.Getpid())))
	scratch := make([]byte, pool.PageBytes())
	for {
		n := 1 + r.IntN(a.Batch)
		pick := r.Perm(a.Keys)[:n]
		bk := make([]string, n)
		for j, i := range pick {
			bk[j] = keys[i]
		}
		var werr error
		switch op := r.IntN(10); {
		case op < 5:
			at := make([]int64, 0, n*pageSize)
			for _, i := range pick {
				at = append(at, idx[i*pageSize:(i+1)*pageSize]...)
			}
			_, werr = s.BatchSetV1(bk, at)
		case op < 8:
			vals := make([][]byte, n)
			for j, i := range pick {
				vals[j] = flat[i]
			}
			_, werr = s.BatchSet(bk, vals)
		case op < 9:
			werr = s.Set(bk[0], flat[pick[0]])
		default:
			ok, err := s.BatchGetV1(bk, readAt[:n*pageSize])
			if err != nil {
				return nil, err
			}
			for j := range ok {
				if !ok[j] {
					continue
				}
				got, err := pool.GetDataPage(readAt[j*pageSize])
				if err != nil {
					return nil, err
				}
				if _, good := verify(got, scratch, a.Store.Model, bk[j]); !good {
					return nil, fmt.Errorf("torture: wrong page for key %s: %s", bk[j], describe(got))
				}
			}
		}
		if werr != nil {
			return nil, werr
		}
	}
}

// A writer SIGKILLed at random moments, through both
// interfaces, leaves nothing a fresh store serves wrong, and its temp files
// are reclaimed when the next store opens.
var _ = Describe("Crash", Serial, Label("torture"), func() {
	It("serves only the pages each key had, and leaves no dead writer's temp file, after SIGKILLs of a writer", func() {
		const (
			nKeys   = 256
			headDim = 256 // 16 KiB pages
			batch   = 32
			minKill = 50
		)
		pageBytes := int64(64 * headDim)
		args := storeArgs{Dir: GinkgoT().TempDir(), Model: "crash-model",
			MaxBatchFileBytes: 8 * pageBytes, MaxBytes: 128 * pageBytes}
		cfg := args.config()
		keys := keyNames(nKeys)

		pool, err := hostcache.New(tortureShape(headDim, batch).Config())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(pool.Close)
		into, err := pool.Alloc(batch * pageSize)
		Expect(err).NotTo(HaveOccurred())
		scratch := make([]byte, pageBytes)
		flat := make([][]byte, batch)
		for i := range flat {
			flat[i] = make([]byte, pageBytes)
		}

		var st struct{ kills, early, survived, checked, wrong int }
		seen := map[string]bool{} // the dead writers' temp files found
		var wrongs, survivors []string
		check := func(k string, page []byte) {
			st.checked++
			if _, ok := verify(page, scratch, cfg.ModelName, k); !ok {
				st.wrong++
				if len(wrongs) < 5 {
					wrongs = append(wrongs, fmt.Sprintf("kill %d, key %s: %s", st.kills, k, describe(page)))
				}
			}
		}
		// reopen opens a fresh store, which reclaims dead writers' temp
		// files at New, checks every page it serves through both
		// interfaces, and returns the temp files left after its New.
		reopen := func() []string {
			GinkgoHelper()
			s, err := hicachefile.New(cfg)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { _ = s.Close() })
			Expect(s.RegisterMemPoolHost(pool)).To(Succeed())
			left, err := leftovers(cfg, keys)
			Expect(err).NotTo(HaveOccurred())
			for from := 0; from < nKeys; from += batch {
				bk := keys[from : from+batch]
				ok, err := s.BatchGetV1(bk, into)
				Expect(err).NotTo(HaveOccurred())
				for j := range ok {
					if ok[j] {
						got, err := pool.GetDataPage(into[j*pageSize])
						Expect(err).NotTo(HaveOccurred())
						check(bk[j], got)
					}
				}
				ok, err = s.BatchGet(bk, flat)
				Expect(err).NotTo(HaveOccurred())
				for j := range ok {
					if ok[j] {
						check(bk[j], flat[j])
					}
				}
			}
			Expect(s.Close()).To(Succeed())
			return left
		}

		r := rand.New(rand.NewPCG(uint64(GinkgoRandomSeed()), 7))
		deadline := time.Now().Add(duration())
		for st.kills < minKill || time.Now().Before(deadline) {
			c := startChild("crash", crashArgs{Store: args, Keys: nKeys, HeadDim: headDim, Batch: batch, Seed: r.Uint64()})
			if r.IntN(8) == 0 {
				// Kill it while it starts, or opens its store.
				st.early++
				time.Sleep(time.Duration(r.IntN(40)) * time.Millisecond)
			} else {
				Expect(c.waitReady(time.Minute)).To(BeTrue(), "the writer did not start; stderr:\n%s", c.stderr.String())
				time.Sleep(time.Duration(r.IntN(150_000)) * time.Microsecond)
			}
			Expect(c.kill()).To(BeTrue(), "the writer exited before it was killed; stderr:\n%s", c.stderr.String())
			st.kills++
			left, err := leftovers(cfg, keys)
			Expect(err).NotTo(HaveOccurred())
			for _, name := range left {
				seen[name] = true
			}

			// A writer's temp file is locked from the moment it has a name
			// (docs/design.md, "Durability and temp files"), so New leaves none
			// of a dead writer's, however young.
			left = reopen()
			for _, name := range left {
				if len(survivors) < 5 {
					survivors = append(survivors, fmt.Sprintf("after kill %d: %s", st.kills, name))
				}
			}
			st.survived += len(left)
		}
		AddReportEntry("crash", fmt.Sprintf("%d SIGKILLs of a writer (%d while it started); %d temp files left by dead writers; %d still there after a New; %d pages checked, %d wrong",
			st.kills, st.early, len(seen), st.survived, st.checked, st.wrong))
		Expect(wrongs).To(BeEmpty(), "wrong pages served")
		Expect(survivors).To(BeEmpty(), "a fresh store's New left dead writers' temp files")
		Expect(st.checked).To(BeNumerically(">", 0), "no page was ever served: the spec checked nothing")
	})
})
