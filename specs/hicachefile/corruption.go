package hicachefile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

// Every bad file is a miss: never a panic, and never bytes handed over as
// good. Each spec writes one batch file of four pages to its own directory,
// damages it, and reads it back.
var _ = Describe("Corruption", Ordered, func() {
	const n = 4
	var (
		p         *hostcache.Pool
		pageBytes int64
	)
	BeforeAll(func() {
		p = mustPool(specShape.Of(hostcache.MHA, hostcache.PageFirst, hostcache.Float16))
		pageBytes = int64(p.PageBytes())
	})

	// batch is one batch file of n pages written by s.
	type batch struct {
		cfg  hicachefile.Config
		s    *hicachefile.Store
		keys []string
		want [][]byte // the pages, as GetDataPage returns them
		path string   // the batch file
	}
	writeBatch := func() batch {
		GinkgoHelper()
		b := batch{cfg: hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "model", MaxBatchFileBytes: n * pageBytes}}
		b.s = mustStore(b.cfg, p)
		from := mustAlloc(p, n)
		fillRandom(p, from)
		b.want = dataPages(p, from)
		b.keys = keysN("c", n)
		ok, err := b.s.BatchSetV1(b.keys, from)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(Equal(trues(n)))
		files := batchFiles(sgname.V1Dir(b.cfg))
		Expect(files).To(HaveLen(1))
		b.path = files[0]
		return b
	}
	// load reads keys through s into fresh pages of the pool registered
	// with s, and checks that every page reported true is byte-exact.
	load := func(s *hicachefile.Store, b batch) []bool {
		GinkgoHelper()
		to := mustAlloc(p, len(b.keys))
		ok, err := s.BatchGetV1(b.keys, to)
		Expect(err).NotTo(HaveOccurred())
		got := dataPages(p, to)
		for i := range ok {
			if ok[i] {
				Expect(got[i]).To(Equal(b.want[i]), "page %d reported true", i)
			}
		}
		return ok
	}
	reopen := func(b batch) *hicachefile.Store {
		GinkgoHelper()
		return mustStore(b.cfg, p)
	}

	Context("a flipped payload byte", func() {
		It("fails only that key; its neighbours in the same file load", func() {
			b := writeBatch()
			loc, found := b.s.Locate(b.keys[1])
			Expect(found).To(BeTrue())
			flipByte(b.path, loc.Offset+loc.Length/3)

			Expect(load(b.s, b)).To(Equal([]bool{true, false, true, true}))
			st := b.s.Stats()
			Expect(st.Corrupt).To(BeEquivalentTo(1))
			Expect(st.Hits).To(BeEquivalentTo(n - 1))
			Expect(st.Misses).To(BeEquivalentTo(1))
			Expect(st.SkippedFiles).To(BeZero())

			// The bad entry is dropped: the key no longer exists, so it
			// would be written again.
			_, found = b.s.Locate(b.keys[1])
			Expect(found).To(BeFalse())
			Expect(b.s.BatchExists(b.keys)).To(Equal(1))
			Expect(load(b.s, b)).To(Equal([]bool{true, false, true, true}))
			Expect(b.s.Stats().Corrupt).To(BeEquivalentTo(1))

			// A new store indexes the file, then finds the same bad page.
			r := reopen(b)
			Expect(load(r, b)).To(Equal([]bool{true, false, true, true}))
			Expect(r.Stats().Corrupt).To(BeEquivalentTo(1))
			Expect(r.Stats().SkippedFiles).To(BeZero())
		})
	})

	Context("a truncated file", func() {
		// A store checks every page it serves against the key, offset and
		// CRC32C in its file's own index, which a batch file keeps after
		// its pages: cut anywhere, the file has lost that index, and none
		// of its pages is served.
		DescribeTable("misses every page, counted corrupt, and a new store skips it",
			func(cut func(pageBytes int64) int64) {
				b := writeBatch()
				Expect(os.Truncate(b.path, cut(pageBytes))).To(Succeed())
				Expect(load(b.s, b)).To(Equal(make([]bool, n)))
				st := b.s.Stats()
				Expect(st.Corrupt).To(BeEquivalentTo(n))
				Expect(st.Misses).To(BeEquivalentTo(n))

				// Its trailer is gone: a new store skips the whole file.
				r := reopen(b)
				Expect(r.Stats().SkippedFiles).To(BeEquivalentTo(1))
				Expect(r.BatchExists(b.keys)).To(BeZero())
				Expect(load(r, b)).To(Equal(make([]bool, n)))
				Expect(r.Stats().Hits).To(BeZero())
			},
			Entry("inside the third page", func(b int64) int64 { return 2*b + b/2 }),
			Entry("at the end of the second page", func(b int64) int64 { return 2 * b }),
			Entry("inside the index", func(b int64) int64 { return n*b + 5 }),
			Entry("to less than a trailer", func(int64) int64 { return 10 }),
			Entry("to nothing", func(int64) int64 { return 0 }),
		)
	})

	Context("a damaged index, identity or trailer", func() {
		// Offsets from the start of the index (entry 0 is keyLen u16, key,
		// offset u64, length u64, crc u32; keys are 5 bytes), of the
		// identity, or of the trailer, as docs/format.md lays them out.
		const keyLen = 5
		DescribeTable("skips the file: its keys all miss on a new store",
			func(region string, at int64) {
				b := writeBatch()
				Expect(len(b.keys[0])).To(Equal(keyLen))
				size := fileSize(b.path)
				identity := hicachefile.IdentitySize(b.cfg.ModelName)
				Expect(size).To(Equal(n*pageBytes + hicachefile.IndexSize(b.keys) + identity + hicachefile.TrailerSize))
				switch region {
				case "index":
					flipByte(b.path, n*pageBytes+at)
				case "identity":
					flipByte(b.path, size-hicachefile.TrailerSize-identity+at)
				case "trailer":
					flipByte(b.path, size-hicachefile.TrailerSize+at)
				}

				r := reopen(b)
				Expect(r.Stats().SkippedFiles).To(BeEquivalentTo(1))
				for _, k := range b.keys {
					_, found := r.Locate(k)
					Expect(found).To(BeFalse())
				}
				Expect(r.BatchExists(b.keys)).To(BeZero())
				Expect(load(r, b)).To(Equal(make([]bool, n)))
				st := r.Stats()
				Expect(st.Misses).To(BeEquivalentTo(n))
				Expect(st.Hits).To(BeZero())
				// Lookups do not count the same file again.
				Expect(st.SkippedFiles).To(BeEquivalentTo(1))
			},
			func(region string, at int64) string { return region + " byte " + strconv.FormatInt(at, 10) },
			Entry(nil, "index", int64(0)),                // keyLen of entry 0
			Entry(nil, "index", int64(2)),                // key of entry 0
			Entry(nil, "index", int64(2+keyLen)),         // offset of entry 0
			Entry(nil, "index", int64(2+keyLen+8)),       // length of entry 0
			Entry(nil, "index", int64(2+keyLen+16)),      // crc of entry 0
			Entry(nil, "index", int64(3*(22+keyLen)+10)), // last entry
			Entry(nil, "identity", int64(0)),             // TP rank
			Entry(nil, "identity", int64(16)),            // flags
			Entry(nil, "identity", int64(17)),            // model name length
			Entry(nil, "identity", int64(19)),            // model name
			Entry(nil, "trailer", int64(0)),              // magic
			Entry(nil, "trailer", int64(8)),              // version
			Entry(nil, "trailer", int64(12)),             // count
			Entry(nil, "trailer", int64(16)),             // indexOff
			Entry(nil, "trailer", int64(24)),             // indexLen
			Entry(nil, "trailer", int64(32)),             // index CRC
			Entry(nil, "trailer", int64(36)),             // fingerprint
			Entry(nil, "trailer", int64(44)),             // identity length
			Entry(nil, "trailer", int64(48)),             // identity CRC
			Entry(nil, "trailer", int64(52)),             // trailer CRC
		)
	})

	Context("a page written by a pool of another dtype or layout with the same byte size", func() {
		DescribeTable("is a mismatch and never read into the pool",
			func(other hostcache.Config) {
				b := writeBatch()
				q := mustPool(other)
				Expect(q.PageBytes()).To(BeEquivalentTo(pageBytes))
				to := mustAlloc(q, n)
				fillRandom(q, to)
				before := dataPages(q, to)

				for _, s := range []*hicachefile.Store{b.s, reopen(b)} {
					Expect(s.RegisterMemPoolHost(q)).To(Succeed())
					ok, err := s.BatchGetV1(b.keys, to)
					Expect(err).NotTo(HaveOccurred())
					Expect(ok).To(Equal(make([]bool, n)))
					Expect(dataPages(q, to)).To(Equal(before))
					st := s.Stats()
					Expect(st.Mismatch).To(BeEquivalentTo(n))
					Expect(st.Misses).To(BeEquivalentTo(n))
					Expect(st.Corrupt).To(BeZero())

					// The pages are not dropped: the right pool still loads them.
					Expect(s.RegisterMemPoolHost(p)).To(Succeed())
					Expect(load(s, b)).To(Equal(trues(n)))
				}
			},
			Entry("bfloat16 instead of float16", specShape.Of(hostcache.MHA, hostcache.PageFirst, hostcache.BFloat16)),
			Entry("page_first_direct instead of page_first", specShape.Of(hostcache.MHA, hostcache.PageFirstDirect, hostcache.Float16)),
			Entry("MLA of the same page size", hostcache.Config{Kind: hostcache.MLA, Layout: hostcache.PageFirst, DType: hostcache.Float16,
				PageSize: pageSize, Pages: poolPages, LayerNum: 2, KVLoraRank: 2 * 2 * 8}),
		)
	})

	Context("a foreign file named like ours", func() {
		// foreign writes size random bytes under a batch file name of b's
		// store, in its V1 directory.
		foreign := func(b batch, size int) {
			GinkgoHelper()
			var token [8]byte
			_, _ = rand.Read(token[:])
			junk := make([]byte, size)
			_, _ = rand.Read(junk)
			name := "b" + hex.EncodeToString(token[:]) + sgname.Suffix(b.cfg) + ".batch.bin"
			Expect(os.WriteFile(filepath.Join(sgname.V1Dir(b.cfg), name), junk, 0o644)).To(Succeed())
		}

		DescribeTable("is skipped by a new store and by a lookup",
			func(size int) {
				b := writeBatch()
				foreign(b, size)

				r := reopen(b)
				Expect(r.Stats().SkippedFiles).To(BeEquivalentTo(1))
				Expect(load(r, b)).To(Equal(trues(n)))

				// The store that was open sees it on its next miss.
				Expect(b.s.Exists("absent")).To(BeFalse())
				Expect(b.s.Stats().SkippedFiles).To(BeEquivalentTo(1))
				Expect(b.s.Exists("absent2")).To(BeFalse())
				Expect(b.s.Stats().SkippedFiles).To(BeEquivalentTo(1))
				Expect(load(b.s, b)).To(Equal(trues(n)))
			},
			Entry("empty", 0),
			Entry("shorter than a trailer", 5),
			Entry("exactly a trailer", hicachefile.TrailerSize),
			Entry("4 KiB of random bytes", 4096),
		)
	})

	Context("an old-format file of the wrong size", func() {
		DescribeTable("is ErrCorrupt for Get and a miss for BatchGetV1",
			func(size func(pageBytes int64) int64) {
				cfg := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "model"}
				s := mustStore(cfg, p)
				from := mustAlloc(p, 1)
				fillRandom(p, from)
				want := dataPages(p, from)[0]
				Expect(s.Set("old", want)).To(Succeed())
				Expect(os.WriteFile(s.FilePath("old"), append(want, want...)[:size(pageBytes)], 0o644)).To(Succeed())

				dst := p.GetDummyFlatDataPage()
				err := s.Get("old", dst)
				Expect(errors.Is(err, hicachefile.ErrCorrupt)).To(BeTrue(), "Get = %v", err)
				Expect(dst).To(Equal(p.GetDummyFlatDataPage()), "dst untouched")
				ok, err := s.BatchGet([]string{"old"}, [][]byte{dst})
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal([]bool{false}))

				to := mustAlloc(p, 1)
				ok, err = s.BatchGetV1([]string{"old"}, to)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal([]bool{false}))
				st := s.Stats()
				Expect(st.Corrupt).To(BeEquivalentTo(3))
				Expect(st.Misses).To(BeEquivalentTo(3))
				Expect(st.Hits).To(BeZero())
			},
			Entry("one byte long", func(b int64) int64 { return b + 1 }),
			Entry("one byte short", func(b int64) int64 { return b - 1 }),
			Entry("empty", func(int64) int64 { return 0 }),
		)
	})
})
