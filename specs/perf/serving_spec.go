package perf

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// The Serving workload's logic, on tiny pages and without timings, so that
// the normal suite (and the race detector) checks it without the perf
// specs: the prefetch finds what earlier turns backed up, MIN across ranks
// holds, MLA has one writer, eviction happens below the working set, and
// every page read is right.
var _ = Describe("Serving workload", Label("serving-logic"), func() {
	// 2 KiB pages: MHA at TP 2, one KV head of dim 4 per rank, 2 layers.
	mha := mustPreset(preset{name: "mini-mha", model: "mini/mha", tpSize: 2, pool: hostcache.Config{
		Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.Float16,
		PageSize: 64, LayerNum: 2, HeadNum: 1, HeadDim: 4,
	}})
	// 2 KiB pages: MLA in layer_first, 2 layers, kv_lora_rank 4 + rope 4.
	mla := mustPreset(preset{name: "mini-mla", model: "mini/mla", tpSize: 1, pool: hostcache.Config{
		Kind: hostcache.MLA, Layout: hostcache.LayerFirst, DType: hostcache.Float16,
		PageSize: 64, LayerNum: 2, KVLoraRank: 4, QKRopeHeadDim: 4,
	}})
	// One client, so that a user's next turn starts only after the backup
	// of its last turn is done (a region is reused after its backup, and
	// the two other users' turns run in between).
	opts := servingOptions{users: 3, turns: 3, clients: 1, mlaTP: 4, capFraction: 1}
	noRecord := func(string, time.Duration) {}
	run := func(pl *servingPlan, iface string) (*servingResult, error) {
		hosts, err := newServingHosts(pl)
		if err != nil {
			return nil, err
		}
		DeferCleanup(closeHosts, hosts)
		return runServing(pl, hosts, iface, GinkgoT().TempDir(), false, 0, noRecord)
	}

	// ownPrefix is the least the tier must serve: each turn after the first
	// finds at least its own previous prompt's full pages.
	ownPrefix := func(pl *servingPlan) int64 {
		var n int64
		for _, c := range pl.convs {
			for t := 1; t < len(c.prompts); t++ {
				n += int64(c.prompts[t-1] / pl.ps)
			}
		}
		return n
	}

	DescribeTable("serves what earlier turns backed up, every page right",
		func(p preset, iface string) {
			pl := newServingPlan(p, opts)
			Expect(pl.maxPages).To(BeNumerically(">", storageBatch), "prompts span several 128-page batches")
			res, err := run(pl, iface)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.errs).To(BeEmpty())
			Expect(res.wrong).To(BeZero())
			Expect(res.requests).To(Equal(pl.requests()))
			Expect(res.hitPages).To(BeNumerically(">=", ownPrefix(pl)))
			Expect(res.hitPages).To(BeNumerically("<", res.promptPages), "each new question is a miss")
			Expect(res.backupFailed).To(BeZero())
			Expect(res.evicted).To(BeZero(), "MaxBytes is the whole working set")
			if pl.mla {
				Expect(pl.ranks).To(Equal(4))
				Expect(res.setsByRank[0]).To(BeNumerically(">", 0), "rank 0 writes")
				Expect(res.setsByRank[1:]).To(HaveEach(BeZero()), "the other MLA ranks only read")
			} else {
				Expect(res.setsByRank).To(HaveEach(BeNumerically(">", 0)), "every MHA rank writes its own files")
			}
			line := res.summaryLine()
			Expect(line).To(MatchRegexp(`^serving: preset=%s interface=%s hit_rate=0\.\d{4} prefetch_gibps=\d+\.\d{3} get_p99_ms=\d+\.\d{3} set_p99_ms=\d+\.\d{3} wrong=0$`, p.name, iface))
		},
		Entry("MHA at TP 2, old interface", mha, interfaceOld),
		Entry("MHA at TP 2, new interface", mha, interfaceNew),
		Entry("MLA on 4 ranks, old interface", mla, interfaceOld),
		Entry("MLA on 4 ranks, new interface", mla, interfaceNew),
	)

	It("evicts below the working set and still serves only right pages", func() {
		o := opts
		o.capFraction = 0.3
		pl := newServingPlan(mha, o)
		res, err := run(pl, interfaceNew)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.errs).To(BeEmpty())
		Expect(res.wrong).To(BeZero())
		Expect(res.evicted).To(BeNumerically(">", 0))
		Expect(res.hitRate()).To(And(BeNumerically(">", 0), BeNumerically("<", 1)))
	})

	It("starts no more requests than its limit", func() {
		pl := newServingPlan(mha, opts)
		hosts, err := newServingHosts(pl)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(closeHosts, hosts)
		res, err := runServing(pl, hosts, interfaceOld, GinkgoT().TempDir(), false, 4, noRecord)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.requests).To(Equal(4))
		Expect(res.wrong).To(BeZero())
	})

	It("builds the same workload from the same flags", func() {
		a, b := newServingPlan(mha, opts), newServingPlan(mha, opts)
		Expect(a.convs).To(Equal(b.convs))
		Expect(a.distinct).To(Equal(b.distinct))
		// Users share the system prompt's full pages, and nothing after.
		sys := a.sysTokens / a.ps
		Expect(sys).To(BeNumerically(">=", 1))
		Expect(a.convs[0].keys[:sys]).To(Equal(a.convs[1].keys[:sys]))
		Expect(a.convs[0].keys[sys]).NotTo(Equal(a.convs[1].keys[sys]))
	})

	It("checks its stamps strictly enough to catch a wrong page", func() {
		Expect(stampSelfTest(mha.pageBytes)).To(Succeed())
		Expect(stampSelfTest(9000)).To(Succeed()) // blocks of 4 KiB and a tail
	})
})
