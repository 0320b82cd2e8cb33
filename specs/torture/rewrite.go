//go:build linux

package torture

import (
	"fmt"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// batchRig is a pool of 512-byte pages with room for n keys to write from
// and n to read into, and a store config whose pages it stamps for owner.
type batchRig struct {
	pool    *hostcache.Pool
	cfg     hicachefile.Config
	owner   string
	from    []int64
	into    []int64
	scratch []byte
}

func newBatchRig(cfg hicachefile.Config, owner string, n int) *batchRig {
	GinkgoHelper()
	pool, err := hostcache.New(tortureShape(8, 2*n).Config())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pool.Close)
	from, err := pool.Alloc(n * pageSize)
	Expect(err).NotTo(HaveOccurred())
	into, err := pool.Alloc(n * pageSize)
	Expect(err).NotTo(HaveOccurred())
	return &batchRig{pool: pool, cfg: cfg, owner: owner, from: from, into: into, scratch: make([]byte, pool.PageBytes())}
}

// open returns a store of cfg with the rig's pool registered, closed when
// the spec ends.
func (r *batchRig) open(cfg hicachefile.Config) *hicachefile.Store {
	GinkgoHelper()
	s, err := hicachefile.New(cfg)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = s.Close() })
	Expect(s.RegisterMemPoolHost(r.pool)).To(Succeed())
	return s
}

// set writes keys' pages stamped with gen through BatchSetV1.
func (r *batchRig) set(s *hicachefile.Store, gen uint64, keys []string) []bool {
	GinkgoHelper()
	page := make([]byte, r.pool.PageBytes())
	for j, k := range keys {
		stamp(page, r.owner, k, gen, 0)
		Expect(r.pool.SetFromFlatDataPage(r.from[j*pageSize], page)).To(Succeed())
	}
	ok, err := s.BatchSetV1(keys, r.from[:len(keys)*pageSize])
	Expect(err).NotTo(HaveOccurred())
	return ok
}

// get reads keys through BatchGetV1, fails the spec on a page served that
// is not the key's, and returns how many were served and their generations.
func (r *batchRig) get(s *hicachefile.Store, keys []string) (served int, gens []uint64) {
	GinkgoHelper()
	ok, err := s.BatchGetV1(keys, r.into[:len(keys)*pageSize])
	Expect(err).NotTo(HaveOccurred())
	gens = make([]uint64, len(keys))
	for j := range ok {
		if !ok[j] {
			continue
		}
		got, err := r.pool.GetDataPage(r.into[j*pageSize])
		Expect(err).NotTo(HaveOccurred())
		gen, good := verify(got, r.scratch, r.owner, keys[j])
		Expect(good).To(BeTrue(), "key %s was served a page that is not its own: %s", keys[j], describe(got))
		served++
		gens[j] = gen
	}
	return served, gens
}

// batchFiles returns the batch files under dir's subdirectories (a
// store's V1 directory, whatever its name).
func batchFiles(dir string) []string {
	GinkgoHelper()
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.batch.bin"))
	Expect(err).NotTo(HaveOccurred())
	return files
}

// A batch file rewritten in place (same inode, same size) by
// another valid batch of the same identity and keys is reloaded, not
// abandoned: its pages are served, and a write of its keys is not skipped
// as if they were stored.
var _ = Describe("Batch file rewritten in place", Label("torture"), func() {
	const n = 64
	DescribeTable("the store serves all 64 keys afterwards",
		func(reader string, first string, noWatch bool) {
			dir := GinkgoT().TempDir()
			cfg := hicachefile.Config{Dir: dir, ModelName: "rewrite", TPSize: 1, NoWatch: noWatch, MaxBatchFileBytes: 1 << 20}
			r := newBatchRig(cfg, "rewrite", n)
			keys := keyNames(n)
			w := r.open(cfg)
			Expect(r.set(w, 0, keys)).To(HaveEach(BeTrue()))
			s := w
			if reader == "another store" {
				s = r.open(cfg)
			}
			served, _ := r.get(s, keys)
			Expect(served).To(Equal(n))
			files := batchFiles(dir)
			Expect(files).To(HaveLen(1), "the 64 keys are not in one batch file")

			// The same keys by a store of the same identity elsewhere, with
			// other bytes: a valid batch of the same size.
			other := cfg
			other.Dir = GinkgoT().TempDir()
			Expect(r.set(r.open(other), 1, keys)).To(HaveEach(BeTrue()))
			theirs := batchFiles(other.Dir)
			Expect(theirs).To(HaveLen(1))
			content, err := os.ReadFile(theirs[0])
			Expect(err).NotTo(HaveOccurred())
			var before, after unix.Stat_t
			Expect(unix.Stat(files[0], &before)).To(Succeed())
			Expect(content).To(HaveLen(int(before.Size)), "the other batch is not of the same size")

			// In place: the same inode, the same size, every byte rewritten.
			f, err := os.OpenFile(files[0], os.O_WRONLY, 0)
			Expect(err).NotTo(HaveOccurred())
			_, err = f.WriteAt(content, 0)
			Expect(err).NotTo(HaveOccurred())
			Expect(f.Close()).To(Succeed())
			Expect(unix.Stat(files[0], &after)).To(Succeed())
			Expect(after.Ino).To(Equal(before.Ino))
			Expect(after.Size).To(Equal(before.Size))

			switch first {
			case "BatchSetV1":
				// Either the keys are stored (the file reloaded) or they are
				// written again: never skipped and then missed.
				Expect(r.set(s, 2, keys)).To(HaveEach(BeTrue()))
			case "BatchGetV1":
				// The read that finds the file changed reloads it; the next
				// serves every page at the latest.
				if served, _ := r.get(s, keys); served < n {
					served, _ = r.get(s, keys)
					Expect(served).To(Equal(n), "after the rewrite, two reads served %d of %d keys", served, n)
				}
			}
			served, gens := r.get(s, keys)
			AddReportEntry("in-place rewrite", fmt.Sprintf("%s, %s first, NoWatch %v: %d of %d keys served after the rewrite (generations %v)",
				reader, first, noWatch, served, n, uniqGens(gens)))
			Expect(served).To(Equal(n), "the store abandoned the rewritten file")
			Expect(s.BatchExists(keys)).To(Equal(n))
			for j, g := range gens {
				Expect(g).To(BeNumerically(">=", 1), "key %s: served the page from before the rewrite", keys[j])
			}
			fresh, _ := r.get(r.open(cfg), keys)
			Expect(fresh).To(Equal(n), "a fresh store")
		},
		Entry(nil, "the writing store", "BatchGetV1", false),
		Entry(nil, "the writing store", "BatchSetV1", false),
		Entry(nil, "the writing store", "BatchGetV1", true),
		Entry(nil, "the writing store", "BatchSetV1", true),
		Entry(nil, "another store", "BatchGetV1", false),
		Entry(nil, "another store", "BatchSetV1", false),
		Entry(nil, "another store", "BatchGetV1", true),
		Entry(nil, "another store", "BatchSetV1", true),
	)
})

// uniqGens returns the distinct values of gens, in order of first sight.
func uniqGens(gens []uint64) []uint64 {
	var out []uint64
	seen := map[uint64]bool{}
	for _, g := range gens {
		if !seen[g] {
			seen[g] = true
			out = append(out, g)
		}
	}
	return out
}
