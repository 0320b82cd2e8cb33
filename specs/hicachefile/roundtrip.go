package hicachefile

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

// iface names one of the store's two interfaces.
type iface string

const (
	oldIface iface = "old copy interface"
	v1Iface  iface = "V1 zero-copy interface"
)

// kindLayoutEntries returns one entry per kind and supported layout, with
// the extra arguments appended to each.
func kindLayoutEntries(extra ...any) []TableEntry {
	var entries []TableEntry
	for _, kind := range []hostcache.Kind{hostcache.MHA, hostcache.MLA} {
		for _, layout := range layoutsOf(kind) {
			entries = append(entries, Entry(nil, append([]any{kind, layout}, extra...)...))
		}
	}
	return entries
}

var _ = Describe("Round trips", func() {
	const n = 5

	DescribeTable("return every page byte-exact into a second pool",
		func(kind hostcache.Kind, layout hostcache.Layout, via iface) {
			cfg := specShape.Of(kind, layout, hostcache.Float16)
			src := mustPool(cfg)
			dst := mustPool(cfg)
			store := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "org/model", IsMLA: kind == hostcache.MLA,
				MaxBatchFileBytes: int64(2 * src.PageBytes())}
			s := mustStore(store, src)

			from := mustAlloc(src, n)
			fillRandom(src, from)
			want := dataPages(src, from)
			mustAlloc(dst, 3) // so that the pages land in other slots
			to := mustAlloc(dst, n)
			Expect(to[0]).NotTo(Equal(from[0]))
			keys := keysN("rt", n)

			switch via {
			case oldIface:
				ok, err := s.BatchSet(keys, want)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal(trues(n)))
				got := make([][]byte, n)
				for i := range got {
					got[i] = dst.GetDummyFlatDataPage()
				}
				ok, err = s.BatchGet(keys, got)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal(trues(n)))
				for i, g := range got {
					Expect(dst.SetFromFlatDataPage(to[i*pageSize], g)).To(Succeed())
				}
			case v1Iface:
				ok, err := s.BatchSetV1(keys, from)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal(trues(n)))
				Expect(batchFiles(sgname.V1Dir(store))).To(HaveLen(3))
				Expect(s.RegisterMemPoolHost(dst)).To(Succeed())
				ok, err = s.BatchGetV1(keys, to)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal(trues(n)))
			}
			Expect(dataPages(dst, to)).To(Equal(want))
			st := s.Stats()
			Expect(st.Sets).To(BeEquivalentTo(n))
			Expect(st.Hits).To(BeEquivalentTo(n))
			Expect(st.GetBytes).To(BeEquivalentTo(n * src.PageBytes()))
			Expect(st.Misses).To(BeZero())
		},
		func(kind hostcache.Kind, layout hostcache.Layout, via iface) string {
			return kind.String() + " " + string(layout) + " through the " + string(via)
		},
		kindLayoutEntries(oldIface),
		kindLayoutEntries(v1Iface),
	)
})

var _ = Describe("Restart and sharing", func() {
	const n = 6

	DescribeTable("a new Store on the same directory finds every page",
		func(kind hostcache.Kind, layout hostcache.Layout) {
			pc := specShape.Of(kind, layout, hostcache.Float16)
			src, dst := mustPool(pc), mustPool(pc)
			cfg := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "model", TPRank: 1, TPSize: 2,
				IsMLA: kind == hostcache.MLA, MaxBatchFileBytes: int64(4 * src.PageBytes())}
			from := mustAlloc(src, n)
			fillRandom(src, from)
			keys := keysN("restart", n)

			w := mustStore(cfg, src)
			ok, err := w.BatchSetV1(keys, from)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(n)))
			Expect(w.Close()).To(Succeed())

			r := mustStore(cfg, dst)
			Expect(r.BatchExists(keys)).To(Equal(n))
			mustAlloc(dst, 1)
			to := mustAlloc(dst, n)
			ok, err = r.BatchGetV1(keys, to)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(n)))
			Expect(dataPages(dst, to)).To(Equal(dataPages(src, from)))
			Expect(r.Stats().SkippedFiles).To(BeZero())
		},
		func(kind hostcache.Kind, layout hostcache.Layout) string { return kind.String() + " " + string(layout) },
		Entry(nil, hostcache.MHA, hostcache.LayerFirst),
		Entry(nil, hostcache.MHA, hostcache.PageHead),
		Entry(nil, hostcache.MLA, hostcache.PageFirst),
	)

	Context("with two stores open on one directory", Ordered, func() {
		var (
			src, dst *hostcache.Pool
			a, b     *hicachefile.Store
		)
		BeforeAll(func() {
			pc := specShape.Of(hostcache.MHA, hostcache.PageFirst, hostcache.BFloat16)
			src, dst = mustPool(pc), mustPool(pc)
			cfg := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "model", MaxBatchFileBytes: int64(2 * src.PageBytes())}
			a = mustStore(cfg, dst)
			b = mustStore(cfg, src)
		})

		// shared writes n pages through w after r exists, and checks that r
		// finds and loads every one of them. With missFirst, r looks the
		// keys up (and misses) before w writes them.
		shared := func(w, r *hicachefile.Store, prefix string, missFirst bool) {
			GinkgoHelper()
			from := mustAlloc(src, n)
			fillRandom(src, from)
			keys := keysN(prefix, n)
			if missFirst {
				Expect(r.BatchExists(keys)).To(BeZero())
				_, found := r.Locate(keys[0])
				Expect(found).To(BeFalse())
			}

			ok, err := w.BatchSetV1(keys, from)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(n)))

			Expect(r.Exists(keys[n-1])).To(BeTrue())
			Expect(r.BatchExists(keys)).To(Equal(n))
			wl, _ := w.Locate(keys[0])
			rl, found := r.Locate(keys[0])
			Expect(found).To(BeTrue())
			Expect(rl).To(Equal(wl))
			to := mustAlloc(dst, n)
			ok, err = r.BatchGetV1(keys, to)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(n)))
			Expect(dataPages(dst, to)).To(Equal(dataPages(src, from)))
		}

		It("finds pages that another Store wrote after it opened", func() {
			shared(b, a, "late", false)
		})

		It("finds pages that another Store wrote after a lookup already missed them", func() {
			shared(b, a, "again", true)
		})

		It("is found by the other Store in turn", func() {
			Expect(b.RegisterMemPoolHost(dst)).To(Succeed())
			DeferCleanup(b.RegisterMemPoolHost, src)
			Expect(a.RegisterMemPoolHost(src)).To(Succeed())
			DeferCleanup(a.RegisterMemPoolHost, dst)
			shared(a, b, "back", true)
		})
	})
})
