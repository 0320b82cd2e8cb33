//go:build linux

package torture

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

// promptLimit is how long one store call may take before the spec calls
// it blocked. A FIFO blocks forever, so the limit only needs to be far
// above the slowest call on a loaded machine under -race.
const promptLimit = 20 * time.Second

// promptly runs f, which makes store calls, and fails the spec if it has
// not returned within promptLimit. A blocked f is left behind, after unblock
// (if not nil) has been called to let it go, so that a hang fails the spec
// instead of wedging the suite.
func promptly(what string, unblock func(), f func()) {
	GinkgoHelper()
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(promptLimit):
		if unblock != nil {
			unblock()
		}
		Fail(fmt.Sprintf("%s blocked for %s", what, promptLimit))
	}
}

// hostileRig is a pool and a store config of the hostile-file specs, with
// helpers that stamp pages for owner and check what is served.
type hostileRig struct {
	pool    *hostcache.Pool
	cfg     hicachefile.Config
	owner   string
	at      []int64 // pages to write from and read into, 8 of them
	scratch []byte
}

func newHostileRig(cfg hicachefile.Config) *hostileRig {
	GinkgoHelper()
	pool, err := hostcache.New(tortureShape(8, 16).Config()) // 512 B pages
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(pool.Close)
	at, err := pool.Alloc(8 * pageSize)
	Expect(err).NotTo(HaveOccurred())
	return &hostileRig{pool: pool, cfg: cfg, owner: ownerOf(cfg), at: at, scratch: make([]byte, pool.PageBytes())}
}

// reportStats adds a report entry of what store s served and refused.
func reportStats(name string, s *hicachefile.Store) {
	st := s.Stats()
	AddReportEntry(name, fmt.Sprintf("%d pages asked for, %d hits, %d misses: %d special files, %d corrupt, %d mismatched, %d skipped files, %d errors; %d evicted, %d dead temp files reclaimed",
		st.Gets, st.Hits, st.Misses, st.SpecialFiles, st.Corrupt, st.Mismatch, st.SkippedFiles, st.Errors, st.Evicted, st.ReclaimedTemps))
}

// trues returns n true values.
func trues(n int) []bool {
	b := make([]bool, n)
	for i := range b {
		b[i] = true
	}
	return b
}

// ownerOf names the store of cfg in its pages' stamps.
func ownerOf(cfg hicachefile.Config) string { return sgname.Suffix(cfg) }

// open returns a new store of the rig's config with its pool registered.
func (r *hostileRig) open() *hicachefile.Store {
	GinkgoHelper()
	s, err := hicachefile.New(r.cfg)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = s.Close() })
	Expect(s.RegisterMemPoolHost(r.pool)).To(Succeed())
	return s
}

// page returns key's stamped flat page.
func (r *hostileRig) page(key string) []byte {
	p := make([]byte, r.pool.PageBytes())
	stamp(p, r.owner, key, 0, 0)
	return p
}

// setV1 writes keys' stamped pages with BatchSetV1.
func (r *hostileRig) setV1(s *hicachefile.Store, keys ...string) ([]bool, error) {
	GinkgoHelper()
	for j, k := range keys {
		Expect(r.pool.SetFromFlatDataPage(r.at[j*pageSize], r.page(k))).To(Succeed())
	}
	return s.BatchSetV1(keys, r.at[:len(keys)*pageSize])
}

// getV1 reads keys with BatchGetV1 and fails the spec on a served page
// that is not the key's, as the rig's owner stamped it.
func (r *hostileRig) getV1(s *hicachefile.Store, keys ...string) []bool {
	GinkgoHelper()
	ok, err := s.BatchGetV1(keys, r.at[:len(keys)*pageSize])
	Expect(err).NotTo(HaveOccurred())
	for j := range ok {
		if ok[j] {
			got, err := r.pool.GetDataPage(r.at[j*pageSize])
			Expect(err).NotTo(HaveOccurred())
			_, good := verify(got, r.scratch, r.owner, keys[j])
			Expect(good).To(BeTrue(), "BatchGetV1 served key %s a wrong page: %s", keys[j], describe(got))
		}
	}
	return ok
}

// get reads key with Get; it fails the spec on a served page that is not
// the key's, and returns Get's error.
func (r *hostileRig) get(s *hicachefile.Store, key string) error {
	GinkgoHelper()
	dst := make([]byte, r.pool.PageBytes())
	err := s.Get(key, dst)
	if err == nil {
		_, good := verify(dst, r.scratch, r.owner, key)
		Expect(good).To(BeTrue(), "Get served key %s a wrong page: %s", key, describe(dst))
	}
	return err
}

// version1File returns a batch file of keys' stamped pages in format
// version 1, the previous format (docs/format.md): the pages in pointer order, an index of keyLen u16, key, offset
// u64, length u64 and CRC32C u32 per page, then a 48-byte trailer: magic
// "HCBATCH1", version 1, count, index offset and length, the index's CRC32C,
// the pool's fingerprint (FNV-1a of its shape, as that version computed
// it), and the CRC32C of the 44 trailer bytes before it. Every checksum is
// good, and the fingerprint is the rig's pool's, so only the version tells
// that the file names no writer.
func (r *hostileRig) version1File(keys []string) []byte {
	GinkgoHelper()
	le := binary.LittleEndian
	crc := func(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }
	var payload, index []byte
	for i, k := range keys {
		Expect(r.pool.SetFromFlatDataPage(r.at[0], r.page(k))).To(Succeed())
		bufs, err := r.pool.PageBuffers(r.at[:pageSize])
		Expect(err).NotTo(HaveOccurred())
		page := bytes.Join(bufs, nil)
		payload = append(payload, page...)
		index = le.AppendUint16(index, uint16(len(k)))
		index = append(index, k...)
		index = le.AppendUint64(index, uint64(i*len(page)))
		index = le.AppendUint64(index, uint64(len(page)))
		index = le.AppendUint32(index, crc(page))
	}
	pc := r.pool.Config()
	_, sizes, err := r.pool.GetPageBufferMeta(r.at[:pageSize])
	Expect(err).NotTo(HaveOccurred())
	h := fnv.New64a()
	fmt.Fprintf(h, "hicache-v1 kind=%s dtype=%s layout=%s ps=%d layers=%d heads=%d headdim=%d lora=%d rope=%d bufs=%v",
		pc.Kind, pc.DType, pc.Layout, pc.PageSize, pc.LayerNum, pc.HeadNum, pc.HeadDim, 0, 0, sizes)
	t := []byte("HCBATCH1")
	t = le.AppendUint32(t, 1)
	t = le.AppendUint32(t, uint32(len(keys)))
	t = le.AppendUint64(t, uint64(len(payload)))
	t = le.AppendUint64(t, uint64(len(index)))
	t = le.AppendUint32(t, crc(index))
	t = le.AppendUint64(t, h.Sum64())
	t = le.AppendUint32(t, crc(t))
	return append(append(payload, index...), t...)
}

// plant puts a special file of kind at path: "fifo", "socket", "dir",
// "symlink" (to target), or "device" (a character device like /dev/zero).
func plant(kind, path, target string) {
	GinkgoHelper()
	switch kind {
	case "fifo":
		Expect(unix.Mkfifo(path, 0o644)).To(Succeed())
	case "dir":
		Expect(os.Mkdir(path, 0o755)).To(Succeed())
	case "symlink":
		Expect(os.Symlink(target, path)).To(Succeed())
	case "device":
		err := unix.Mknod(path, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5)))
		if errors.Is(err, unix.EPERM) {
			msg := fmt.Sprintf("mknod is not permitted here (%v): a symlink to /dev/zero stands in for the device", err)
			AddReportEntry("no device", msg)
			fmt.Fprintln(GinkgoWriter, msg)
			err = os.Symlink("/dev/zero", path)
		}
		Expect(err).NotTo(HaveOccurred())
	case "socket":
		// A socket path must fit in sun_path (108 bytes): bind a short one,
		// then rename it into place.
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = unix.Close(fd) })
		short := filepath.Join(os.TempDir(), fmt.Sprintf("hicache-sock-%d-%d", os.Getpid(), time.Now().UnixNano()))
		Expect(unix.Bind(fd, &unix.SockaddrUnix{Name: short})).To(Succeed())
		Expect(unix.Listen(fd, 1)).To(Succeed())
		Expect(os.Rename(short, path)).To(Succeed())
	default:
		Fail("unknown kind " + kind)
	}
}

// unblockFIFO lets a reader blocked opening the FIFO at path go: it opens
// the FIFO for writing (which never blocks with O_RDWR) and closes it.
func unblockFIFO(path string) func() {
	return func() {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			time.Sleep(100 * time.Millisecond)
			_ = unix.Close(fd)
		}
	}
}

// Files and directories that
// others planted, damaged, renamed or replaced under the store never make it
// block, serve a wrong page, or run out of descriptors.
var _ = Describe("Hostile files", Label("torture"), func() {
	newCfg := func(model string, rank int) hicachefile.Config {
		return hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: model, TPRank: rank, TPSize: 2, MaxBytes: 1 << 20}
	}

	DescribeTable("a special file under a store name is a miss, and no call blocks on it",
		func(kind string, batch bool) {
			cfg := newCfg("hostile", 0)
			r := newHostileRig(cfg)
			k := keyName(0)
			path := filepath.Join(cfg.Dir, k+sgname.Suffix(cfg)+".bin")
			// The symlink's target is a page the store must not serve: for
			// a .bin name, a file of k's own stamped page; for a batch name,
			// a real batch file of k that a store of the same name wrote
			// elsewhere.
			target := filepath.Join(GinkgoT().TempDir(), "target")
			Expect(os.WriteFile(target, r.page(k), 0o644)).To(Succeed())
			if batch {
				elsewhere := cfg
				elsewhere.Dir = GinkgoT().TempDir()
				o, err := hicachefile.New(elsewhere)
				Expect(err).NotTo(HaveOccurred())
				Expect(o.RegisterMemPoolHost(r.pool)).To(Succeed())
				ok, err := r.setV1(o, k)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal([]bool{true}))
				Expect(o.Close()).To(Succeed())
				files, err := filepath.Glob(filepath.Join(sgname.V1Dir(elsewhere), "*.batch.bin"))
				Expect(err).NotTo(HaveOccurred())
				Expect(files).To(HaveLen(1))
				target = files[0]
				Expect(os.MkdirAll(sgname.V1Dir(cfg), 0o755)).To(Succeed())
				path = filepath.Join(sgname.V1Dir(cfg), batchName(cfg, 1))
			}
			before, err := os.ReadFile(target)
			Expect(err).NotTo(HaveOccurred())
			plant(kind, path, target)
			var unblock func()
			if kind == "fifo" {
				unblock = unblockFIFO(path)
			}

			// The store comes back through an atomic: a New that blocks
			// may still return after the spec gave up on it.
			var opened atomic.Pointer[hicachefile.Store]
			promptly("New", unblock, func() {
				s, err := hicachefile.New(cfg)
				Expect(err).NotTo(HaveOccurred())
				opened.Store(s)
				Expect(s.RegisterMemPoolHost(r.pool)).To(Succeed())
			})
			s := opened.Load()
			Expect(s).NotTo(BeNil(), "New failed")
			DeferCleanup(func() { _ = s.Close() })
			promptly("reads", unblock, func() {
				Expect(r.get(s, k)).NotTo(Succeed(), "Get")
				ok, err := s.BatchGet([]string{k}, [][]byte{make([]byte, r.pool.PageBytes())})
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal([]bool{false}), "BatchGet")
				Expect(r.getV1(s, k)).To(Equal([]bool{false}), "BatchGetV1")
				Expect(s.Exists(k)).To(BeFalse(), "Exists")
				Expect(s.BatchExists([]string{k})).To(BeZero(), "BatchExists")
			})
			Expect(s.Stats().SpecialFiles).To(BeNumerically(">", 0), "Stats.SpecialFiles")
			Expect(s.Stats().Hits).To(BeZero())

			promptly("writes", unblock, func() {
				ok, err := r.setV1(s, k)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal([]bool{true}), "BatchSetV1")
				Expect(r.getV1(s, k)).To(Equal([]bool{true}), "BatchGetV1 after BatchSetV1")
				// Set may replace the special file by rename, or fail (a
				// directory): either way it returns, and serves no wrong page.
				if s.Set(k, r.page(k)) == nil {
					Expect(r.get(s, k)).To(Succeed())
				}
			})
			promptly("Clear", unblock, func() { Expect(s.Clear()).To(Succeed()) })
			reportStats("store", s)
			_, err = os.Lstat(path)
			Expect(err).To(MatchError(os.ErrNotExist), "Clear left the %s under a store name", kind)
			promptly("Close", unblock, func() { Expect(s.Close()).To(Succeed()) })
			after, err := os.ReadFile(target)
			Expect(err).NotTo(HaveOccurred())
			Expect(after).To(Equal(before), "the symlink's target changed")
		},
		func(kind string, batch bool) string {
			if batch {
				return fmt.Sprintf("a %s under a .batch.bin name", kind)
			}
			return fmt.Sprintf("a %s under a .bin name", kind)
		},
		Entry(nil, "fifo", false), Entry(nil, "fifo", true),
		Entry(nil, "symlink", false), Entry(nil, "symlink", true),
		Entry(nil, "dir", false), Entry(nil, "dir", true),
		Entry(nil, "socket", false), Entry(nil, "socket", true),
		Entry(nil, "device", false), Entry(nil, "device", true),
	)

	DescribeTable("a wrong-sized .bin file is absent, and a write replaces it",
		func(size func(pageBytes int) int) {
			cfg := newCfg("sizes", 0)
			r := newHostileRig(cfg)
			s := r.open()
			writers := map[string]func(k string){
				"Set": func(k string) { Expect(s.Set(k, r.page(k))).To(Succeed()) },
				"BatchSet": func(k string) {
					ok, err := s.BatchSet([]string{k}, [][]byte{r.page(k)})
					Expect(err).NotTo(HaveOccurred())
					Expect(ok).To(Equal([]bool{true}))
				},
				"BatchSetV1": func(k string) {
					ok, err := r.setV1(s, k)
					Expect(err).NotTo(HaveOccurred())
					Expect(ok).To(Equal([]bool{true}))
				},
			}
			i := 0
			for name, write := range writers {
				k := keyName(i)
				i++
				path := filepath.Join(cfg.Dir, k+sgname.Suffix(cfg)+".bin")
				junk := make([]byte, size(r.pool.PageBytes()))
				_, _ = rand.Read(junk)
				Expect(os.WriteFile(path, junk, 0o644)).To(Succeed())

				Expect(s.Exists(k)).To(BeFalse(), "%s: Exists", name)
				Expect(s.BatchExists([]string{k})).To(BeZero(), "%s: BatchExists", name)
				Expect(r.get(s, k)).NotTo(Succeed(), "%s: Get", name)
				Expect(r.getV1(s, k)).To(Equal([]bool{false}), "%s: BatchGetV1", name)
				write(k)
				Expect(r.getV1(s, k)).To(Equal([]bool{true}), "%s: BatchGetV1 after the write", name)
				if name != "BatchSetV1" {
					Expect(r.get(s, k)).To(Succeed(), "%s: Get after the write", name)
					Expect(fileSizeOf(path)).To(BeEquivalentTo(r.pool.PageBytes()), "%s did not replace the file", name)
				}
			}
			reportStats("store", s)
		},
		Entry("0 bytes", func(int) int { return 0 }),
		Entry("7 bytes", func(int) int { return 7 }),
		Entry("a byte short", func(n int) int { return n - 1 }),
		Entry("a byte long", func(n int) int { return n + 1 }),
	)

	It("never serves another model's or another TP rank's same-shape batch file renamed over ours", func() {
		dir := GinkgoT().TempDir()
		ours := newCfg("llama", 0)
		ours.Dir = dir
		model, rank := ours, ours
		model.ModelName = "mistral"
		rank.TPRank = 1
		r := newHostileRig(ours)
		live := r.open()
		keys := keyNames(8)
		ok, err := r.setV1(live, keys...)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(HaveEach(BeTrue()))
		oursFile, err := filepath.Glob(filepath.Join(sgname.V1Dir(ours), "*.batch.bin"))
		Expect(err).NotTo(HaveOccurred())
		Expect(oursFile).To(HaveLen(1))

		for _, foreign := range []hicachefile.Config{model, rank} {
			what := ownerOf(foreign)
			f := newHostileRig(foreign)
			f.pool = r.pool // the same shape: only the identity differs
			w := f.open()
			ok, err := f.setV1(w, keys...)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(HaveEach(BeTrue()))
			theirs, err := filepath.Glob(filepath.Join(sgname.V1Dir(foreign), "*.batch.bin"))
			Expect(err).NotTo(HaveOccurred())
			Expect(theirs).To(HaveLen(1))
			Expect(os.Rename(theirs[0], oursFile[0])).To(Succeed())

			// The live store indexed our file, so the foreign bytes may fail
			// its checksums before their identity is read: a miss either way.
			was := live.Stats()
			Expect(r.getV1(live, keys...)).To(HaveEach(BeFalse()), "the live store served %s's pages", what)
			now := live.Stats()
			Expect(now.Mismatch+now.Corrupt-was.Mismatch-was.Corrupt).To(BeNumerically(">=", len(keys)),
				"the live store did not count %s's pages as Mismatch or Corrupt", what)
			fresh := r.open()
			Expect(r.getV1(fresh, keys...)).To(HaveEach(BeFalse()), "a fresh store served %s's pages", what)
			Expect(fresh.Stats().Mismatch).To(BeNumerically(">=", len(keys)), "a fresh store did not count %s's pages as Mismatch", what)
			Expect(fresh.BatchExists(keys)).To(BeZero())
			reportStats("live store, "+what+"'s file", live)
			reportStats("fresh store, "+what+"'s file", fresh)

			// Not ours, so not "already stored": the store writes its own.
			ok, err = r.setV1(fresh, keys...)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(HaveEach(BeTrue()))
			Expect(r.getV1(fresh, keys...)).To(HaveEach(BeTrue()))
			Expect(fresh.Close()).To(Succeed())
			Expect(os.Remove(oursFile[0])).To(Succeed())
			// Give the live store its own file back for the next round.
			ok, err = r.setV1(live, keys...)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(HaveEach(BeTrue()))
			oursFile, err = filepath.Glob(filepath.Join(sgname.V1Dir(ours), "*.batch.bin"))
			Expect(err).NotTo(HaveOccurred())
			Expect(oursFile).NotTo(BeEmpty())
		}
	})

	It("never takes an ambiguous old-format name into the zero-copy path", func() {
		// Key "k_x" of model "m" and key "k" of model "x_m" share a file name.
		m := newCfg("m", 0)
		xm := m
		xm.ModelName = "x_m"
		r := newHostileRig(m)
		x := newHostileRig(xm)
		x.pool = r.pool
		Expect(x.open().Set("k", x.page("k"))).To(Succeed())
		Expect(filepath.Join(m.Dir, "k_x"+sgname.Suffix(m)+".bin")).To(BeAnExistingFile())

		s := r.open()
		Expect(r.getV1(s, "k_x")).To(Equal([]bool{false}), "BatchGetV1 served model x_m's page")
		ok, err := r.setV1(s, "k_x")
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(Equal([]bool{true}))
		Expect(r.getV1(s, "k_x")).To(Equal([]bool{true}), "BatchSetV1 wrote nothing")
		reportStats("model m", s)
	})

	It("reclaims SGLang's temp files of its names, and forgets every key, at Clear", func() {
		cfg := newCfg("clear", 0)
		r := newHostileRig(cfg)
		s := r.open()
		keys := []string{keyName(1), "req42_page_7", "old_key_1"}
		for _, k := range keys {
			Expect(s.Set(k, r.page(k))).To(Succeed())
		}
		ok, err := r.setV1(s, keys...)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(HaveEach(BeTrue()))
		sglangTmp := filepath.Join(cfg.Dir, fmt.Sprintf("%s%s.bin.tmp.%d.%d.%032x", keys[0], sgname.Suffix(cfg), 4242, 4243, 0xabc))
		Expect(os.WriteFile(sglangTmp, r.page(keys[0])[:100], 0o644)).To(Succeed())

		Expect(s.Clear()).To(Succeed())
		Expect(sglangTmp).NotTo(BeAnExistingFile())
		for _, st := range []*hicachefile.Store{s, r.open()} {
			for _, k := range keys {
				Expect(st.Exists(k)).To(BeFalse(), "key %s exists after Clear", k)
				Expect(r.get(st, k)).NotTo(Succeed(), "key %s served after Clear", k)
				Expect(r.getV1(st, k)).To(Equal([]bool{false}), "key %s served after Clear", k)
			}
		}
		reportStats("store", s)
	})

	It("holds old-format files of keys with '_' to MaxBytes after it reopens", func() {
		const pages = 8
		cfg := newCfg("bounded", 0)
		r := newHostileRig(cfg)
		cfg.MaxBytes = pages * int64(r.pool.PageBytes())
		r.cfg = cfg
		s := r.open()
		for i := range pages {
			k := fmt.Sprintf("req%d_page_%d", i, i)
			Expect(s.Set(k, r.page(k))).To(Succeed())
		}
		Expect(s.Close()).To(Succeed())
		s = r.open()
		for i := range 2 * pages {
			k := keyName(100 + i)
			Expect(s.Set(k, r.page(k))).To(Succeed())
			held, err := filepath.Glob(filepath.Join(cfg.Dir, "*"+sgname.Suffix(cfg)+".bin"))
			Expect(err).NotTo(HaveOccurred())
			Expect(len(held)).To(BeNumerically("<=", pages), "after %d writes the store holds %d pages over MaxBytes %d: %v", i+1, len(held), cfg.MaxBytes, held)
		}
		reportStats("reopened store", s)
	})

	It("skips a batch file of format version 1, whose trailer names no writer, and serves none of its pages", func() {
		cfg := newCfg("oldformat", 0)
		r := newHostileRig(cfg)
		keys := keyNames(4)
		path := filepath.Join(sgname.V1Dir(cfg), batchName(cfg, 7))
		Expect(os.MkdirAll(sgname.V1Dir(cfg), 0o755)).To(Succeed())
		Expect(os.WriteFile(path, r.version1File(keys), 0o644)).To(Succeed())

		s := r.open()
		Expect(s.Stats().SkippedFiles).To(BeNumerically(">=", 1), "Stats.SkippedFiles")
		Expect(s.BatchExists(keys)).To(BeZero())
		Expect(r.getV1(s, keys...)).To(HaveEach(BeFalse()), "a version-1 file was served")
		ok, err := r.setV1(s, keys...)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(HaveEach(BeTrue()))
		Expect(r.getV1(s, keys...)).To(HaveEach(BeTrue()))
		reportStats("store", s)
	})

	It("counts another writer's live temp file toward MaxBytes, and never removes it", func() {
		cfg := newCfg("livetemp", 0)
		cfg.MaxBatchFileBytes = 1 << 20
		r := newHostileRig(cfg)
		// Writer A stops inside its write, after its temp file got all its
		// bytes, until released.
		written, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		acfg := cfg
		acfg.Syscalls.Pwritev = func(fd int, iovs [][]byte, off int64) (int, error) {
			n, err := unix.Pwritev(fd, iovs, off)
			once.Do(func() {
				close(written)
				<-release
			})
			return n, err
		}
		a, err := hicachefile.New(acfg)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = a.Close() })
		Expect(a.RegisterMemPoolHost(r.pool)).To(Succeed())
		var released sync.Once
		free := func() { released.Do(func() { close(release) }) }
		DeferCleanup(free) // before a.Close, which waits for the write
		aKeys := keyNames(8)
		aDone := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			ok, err := r.setV1(a, aKeys...)
			if err == nil && !slices.Equal(ok, trues(len(aKeys))) {
				err = fmt.Errorf("torture: BatchSetV1 reported %v", ok)
			}
			aDone <- err
		}()
		Eventually(written).Should(BeClosed())
		left, err := leftovers(cfg, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(left).To(HaveLen(1), "writer A's temp file")
		live := fileSizeOf(filepath.Join(cfg.Dir, left[0]))
		Expect(live).To(BeNumerically(">=", 8*r.pool.PageBytes()))

		// Store B, of the same name, finds A's temp file live at New: it
		// keeps it, and holds its own files to MaxBytes less its bytes.
		bcfg := cfg
		bcfg.MaxBytes = live + 2*int64(r.pool.PageBytes()) // room for one of its files, not two
		r.cfg = bcfg
		b := r.open()
		for i := range 16 {
			k := keyName(100 + i)
			ok, err := r.setV1(b, k)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal([]bool{true}))
			Expect(filepath.Join(cfg.Dir, left[0])).To(BeAnExistingFile(), "store B removed writer A's live temp file")
			Expect(usedBytes(sgname.V1Dir(cfg))).To(BeNumerically("<=", bcfg.MaxBytes), "after B's write %d, with A's temp file of %d bytes live", i, live)
		}
		free()
		Eventually(aDone).Should(Receive(BeNil()), "writer A's write failed")
		AddReportEntry("live temp file", fmt.Sprintf("writer A's temp file of %d bytes, live through store B's New and 16 writes under MaxBytes %d", live, bcfg.MaxBytes))
		reportStats("store B", b)
	})

	It("returns ErrClosed from RegisterMemPoolHost after Close", func() {
		r := newHostileRig(newCfg("closed", 0))
		s := r.open()
		Expect(s.Close()).To(Succeed())
		Expect(s.RegisterMemPoolHost(r.pool)).To(MatchError(hicachefile.ErrClosed))
	})
})

// countFDs returns how many descriptors the process has open.
func countFDs() int {
	GinkgoHelper()
	ents, err := os.ReadDir("/proc/self/fd")
	Expect(err).NotTo(HaveOccurred())
	return len(ents)
}

var _ = Describe("Replaced directory", Serial, Label("torture"), func() {
	It("writes through both interfaces land at Dir after it was removed or moved away", func() {
		cfg := hicachefile.Config{Dir: filepath.Join(GinkgoT().TempDir(), "cache"), ModelName: "moved"}
		r := newHostileRig(cfg)
		s := r.open()
		keys := keyNames(4)
		check := func(k, v1 string) {
			GinkgoHelper()
			Expect(s.Set(k, r.page(k))).To(Succeed())
			Expect(filepath.Join(cfg.Dir, k+sgname.Suffix(cfg)+".bin")).To(BeARegularFile(), "Set did not write into Dir")
			Expect(r.get(s, k)).To(Succeed())
			ok, err := r.setV1(s, v1)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal([]bool{true}))
			Expect(r.getV1(s, v1)).To(Equal([]bool{true}))
			files, err := filepath.Glob(filepath.Join(sgname.V1Dir(cfg), "*.batch.bin"))
			Expect(err).NotTo(HaveOccurred())
			Expect(files).NotTo(BeEmpty(), "BatchSetV1 did not write into Dir")
		}
		Expect(os.RemoveAll(cfg.Dir)).To(Succeed())
		check(keys[0], keys[1])
		Expect(os.Rename(cfg.Dir, cfg.Dir+".old")).To(Succeed())
		Expect(os.Mkdir(cfg.Dir, 0o755)).To(Succeed())
		check(keys[2], keys[3])
	})

	It("closes the descriptor of each removed V1 directory", func() {
		const removals = 1000
		cfg := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "removed"}
		r := newHostileRig(cfg)
		s := r.open()
		keys := keyNames(removals)
		before := countFDs()
		for i, k := range keys {
			Expect(os.RemoveAll(sgname.V1Dir(cfg))).To(Succeed())
			ok, err := r.setV1(s, k)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal([]bool{true}), "removal %d", i)
		}
		after := countFDs()
		AddReportEntry("replaced directory", fmt.Sprintf("%d removals of the V1 directory under a live store: %d descriptors open before, %d after", removals, before, after))
		Expect(after-before).To(BeNumerically("<", 10), "descriptors grew with the removals")
	})
})
