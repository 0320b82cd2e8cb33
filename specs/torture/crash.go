//go:build linux

package torture

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// tempGrace is how old a dead writer's temp file must be before New
// removes it: pkg/hicachefile/doc.go ("Durability") gives a second, the
// longest it takes a live writer from creating its temp file to locking it.
const tempGrace = time.Second

// mtimeSlack allows for the coarseness of file modification times (a few
// milliseconds on ext4) against the wall clock.
const mtimeSlack = 50 * time.Millisecond

// ageAt returns how old the file at path was at t, by its modification
// time, or 0 if it is gone.
func ageAt(path string, t time.Time) time.Duration {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0
	}
	return t.Sub(fi.ModTime())
}

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
	pool, err := hostcache.New(poolConfig(a.HeadDim, a.Keys+a.Batch))
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

// Issue 7 §5 and §11: a writer SIGKILLed at random moments, through both
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

		pool, err := hostcache.New(poolConfig(headDim, batch))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(pool.Close)
		into, err := pool.Alloc(batch * pageSize)
		Expect(err).NotTo(HaveOccurred())
		scratch := make([]byte, pageBytes)
		flat := make([][]byte, batch)
		for i := range flat {
			flat[i] = make([]byte, pageBytes)
		}

		var st struct{ kills, early, young, checked, wrong int }
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
		// interfaces, and returns the temp files left after its New, and
		// when New started.
		reopen := func() ([]string, time.Time) {
			GinkgoHelper()
			started := time.Now()
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
			return left, started
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

			// New leaves only temp files too young to tell from a live
			// writer's between its create and its lock.
			left, started := reopen()
			for _, name := range left {
				if age := ageAt(filepath.Join(cfg.Dir, name), started); age < tempGrace+mtimeSlack {
					st.young++
				} else if len(survivors) < 5 {
					survivors = append(survivors, fmt.Sprintf("after kill %d: %s, %s old at New", st.kills, name, age.Round(time.Millisecond)))
				}
			}
		}
		// Past the grace, a fresh store leaves no temp file at all.
		time.Sleep(tempGrace + 100*time.Millisecond)
		final, _ := reopen()
		AddReportEntry("crash", fmt.Sprintf("%d SIGKILLs of a writer (%d while it started); %d temp files left by dead writers; after a New, %d times one younger than %s was still there, and %d after the last; %d pages checked, %d wrong",
			st.kills, st.early, len(seen), st.young, tempGrace, len(final), st.checked, st.wrong))
		Expect(wrongs).To(BeEmpty(), "wrong pages served")
		Expect(survivors).To(BeEmpty(), "a fresh store's New left dead writers' temp files older than %s", tempGrace)
		Expect(final).To(BeEmpty(), "a fresh store's New, %s after the last kill, left dead writers' temp files", tempGrace)
		Expect(st.checked).To(BeNumerically(">", 0), "no page was ever served: the spec checked nothing")
	})
})
