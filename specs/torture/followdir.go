//go:build linux

package torture

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
)

// The phases of the followed-directory spec. A read call notes the phase
// when it starts; the phase moves only after what it names is done.
const (
	phaseBefore    = iota // the store's own pages (generation 0) at Dir
	phaseSwapped          // Dir moved away (or the link retargeted): generation 0 is gone from the path
	phaseRewritten        // another store wrote the keys at the path (generation 1)
	phaseCleared          // that store cleared them: nothing is at the path
)

// followedReads counts what the readers of the followed-directory spec saw.
type followedReads struct {
	mu        sync.Mutex
	calls     [4]int // read calls by the phase they started in
	served    [4]int // pages served and checked, by phase
	wrong     []string
	wholeNew  int // calls in phaseRewritten served every key, at generation 1
	readError []string
}

func (f *followedReads) note(list *[]string, format string, args ...any) {
	if len(*list) < 5 {
		*list = append(*list, fmt.Sprintf(format, args...))
	}
}

// A store whose reads all hit follows the path Dir when it is
// moved away (mv Dir Dir.old && mkdir Dir) or, a symlink, retargeted (ln
// -sfn): no read call that starts after the change serves a page of the
// directory left behind, the pages another store then writes at the path
// are served, none after that store's Clear, and the store's own writes and
// Clear act at the path. With inotify and without.
var _ = Describe("Followed directory", Serial, Label("torture"), func() {
	const (
		nKeys   = 16
		readers = 3
	)
	DescribeTable("readers whose reads all hit never serve the directory left behind",
		func(change string, noWatch bool) {
			root := GinkgoT().TempDir()
			path := filepath.Join(root, "cache")
			old := path + ".old" // where the store's pages are left
			var swap func()
			switch change {
			case "moved":
				swap = func() {
					Expect(os.Rename(path, old)).To(Succeed())
					Expect(os.Mkdir(path, 0o755)).To(Succeed())
				}
			case "symlink":
				target := filepath.Join(root, "a")
				Expect(os.Mkdir(target, 0o755)).To(Succeed())
				Expect(os.Mkdir(filepath.Join(root, "b"), 0o755)).To(Succeed())
				Expect(os.Symlink(target, path)).To(Succeed())
				old = target
				swap = func() { // ln -sfn b cache: a new link renamed over the old
					Expect(os.Symlink(filepath.Join(root, "b"), path+".new")).To(Succeed())
					Expect(os.Rename(path+".new", path)).To(Succeed())
				}
			}
			cfg := hicachefile.Config{Dir: path, ModelName: "followed", TPSize: 1, NoWatch: noWatch}
			keys := keyNames(nKeys)
			r := newBatchRig(cfg, "followed", readers*nKeys)
			s := r.open(cfg)
			Expect(r.set(s, 0, keys)).To(HaveEach(BeTrue()))
			served, _ := r.get(s, keys)
			Expect(served).To(Equal(nKeys))

			var phase atomic.Int32
			var stop atomic.Bool
			var res followedReads
			var wg sync.WaitGroup
			for rd := range readers {
				at := r.into[rd*nKeys*pageSize : (rd+1)*nKeys*pageSize]
				wg.Go(func() {
					defer GinkgoRecover()
					scratch := make([]byte, r.pool.PageBytes())
					for !stop.Load() {
						ph := phase.Load()
						ok, err := s.BatchGetV1(keys, at)
						n, gen1 := 0, 0
						res.mu.Lock()
						res.calls[ph]++
						if err != nil {
							res.note(&res.readError, "phase %d: %v", ph, err)
						}
						for j := range ok {
							if !ok[j] {
								continue
							}
							n++
							got, err := r.pool.GetDataPage(at[j*pageSize])
							Expect(err).NotTo(HaveOccurred())
							gen, good := verify(got, scratch, r.owner, keys[j])
							switch {
							case !good:
								res.note(&res.wrong, "phase %d, key %s: not its page: %s", ph, keys[j], describe(got))
							case ph >= phaseSwapped && gen == 0:
								res.note(&res.wrong, "phase %d, key %s: a page of the directory left behind", ph, keys[j])
							case ph == phaseCleared:
								res.note(&res.wrong, "phase %d, key %s: served after the Clear at the path", ph, keys[j])
							case gen == 1:
								gen1++
							}
						}
						res.served[ph] += n
						if ph == phaseRewritten && gen1 == nKeys {
							res.wholeNew++
						}
						res.mu.Unlock()
					}
				})
			}
			DeferCleanup(func() { stop.Store(true); wg.Wait() })
			settle := func() { time.Sleep(100 * time.Millisecond) }

			wrongNow := func() []string {
				res.mu.Lock()
				defer res.mu.Unlock()
				return slices.Clone(res.wrong)
			}
			settle()
			swap()
			phase.Store(phaseSwapped)
			settle()
			Expect(wrongNow()).To(BeEmpty(), "%s Dir: pages served that are not the path's", change)

			// Another store at the path writes the keys (generation 1): the
			// readers find them, through a refresh of the directory now at
			// the path.
			w := r.open(hicachefile.Config{Dir: path, ModelName: "followed", TPSize: 1})
			page := make([]byte, r.pool.PageBytes())
			at := r.from[:nKeys*pageSize]
			for j, k := range keys {
				stamp(page, r.owner, k, 1, 0)
				Expect(r.pool.SetFromFlatDataPage(at[j*pageSize], page)).To(Succeed())
			}
			ok, err := w.BatchSetV1(keys, at)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(HaveEach(BeTrue()))
			phase.Store(phaseRewritten)
			Eventually(func() int {
				res.mu.Lock()
				defer res.mu.Unlock()
				return res.wholeNew
			}).WithTimeout(10*time.Second).WithPolling(10*time.Millisecond).Should(BeNumerically(">", 0),
				"no read served the pages written at the path")
			Expect(w.Clear()).To(Succeed())
			phase.Store(phaseCleared)
			settle()
			stop.Store(true)
			wg.Wait()

			// The store's own write and Clear act at the path, and leave the
			// directory left behind as it was.
			left := batchFiles(old)
			Expect(left).NotTo(BeEmpty())
			Expect(r.set(s, 2, keys[:4])).To(HaveEach(BeTrue()))
			Expect(batchFiles(path)).NotTo(BeEmpty(), "the store's write did not land at the path")
			Expect(s.Clear()).To(Succeed())
			Expect(batchFiles(path)).To(BeEmpty(), "the store's Clear left files at the path")
			Expect(batchFiles(old)).To(HaveLen(len(left)), "the store's Clear removed files of the directory left behind")

			AddReportEntry("followed directory", fmt.Sprintf("%s, NoWatch %v, %d readers of %d keys: read calls by phase (before, changed, rewritten at the path, cleared at the path) %v, pages served and checked %v; %d calls served every key from the path",
				change, noWatch, readers, nKeys, res.calls, res.served, res.wholeNew))
			Expect(res.wrong).To(BeEmpty(), "pages served that are not the path's")
			Expect(res.readError).To(BeEmpty())
			for ph, n := range res.calls {
				Expect(n).To(BeNumerically(">", 0), "no read call started in phase %d", ph)
			}
			Expect(res.served[phaseBefore]).To(BeNumerically(">", 0))
		},
		Entry(nil, "moved", false),
		Entry(nil, "moved", true),
		Entry(nil, "symlink", false),
		Entry(nil, "symlink", true),
	)
})
