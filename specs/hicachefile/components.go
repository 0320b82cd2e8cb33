package hicachefile

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

// SGLang's v2 interface (batch_exists_v2, batch_get_v2, batch_set_v2 in
// sgl-project/sglang python/sglang/srt/mem_cache/hicache_storage.py at
// 001067f): the KV pool plus component pools of shapes of their own.

// mambaPoolConfig is a Mamba-style state pool: one slot per page (a page
// size other than the KV pool's), a temporal and a conv state per slot.
func mambaPoolConfig() hostcache.Config {
	return hostcache.Config{Kind: hostcache.Component, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
		PageSize: 1, Pages: poolPages, BufferBytes: [hostcache.MaxComponentBuffers]int{96, 40}}
}

// v2Pools is a store's KV pool and its component pools by name: "mamba"
// (Component, one slot per page) and "indexer" (MLA, as DeepSeek's DSA
// indexer pool).
type v2Pools map[string]*hostcache.Pool

// newV2Pools returns fresh pools of the three shapes.
func newV2Pools() v2Pools {
	GinkgoHelper()
	return v2Pools{
		"kv":      mustPool(specShape.Of(hostcache.MHA, hostcache.PageFirst, hostcache.Float16)),
		"mamba":   mustPool(mambaPoolConfig()),
		"indexer": mustPool(specShape.Of(hostcache.MLA, hostcache.PageFirst, hostcache.BFloat16)),
	}
}

// register registers every pool with s under its name.
func (ps v2Pools) register(s *hicachefile.Store) {
	GinkgoHelper()
	for name, p := range ps {
		Expect(s.RegisterPool(name, p)).To(Succeed())
	}
}

// pageSlots returns the slots of page i of idx in pool p.
func pageSlots(p *hostcache.Pool, idx []int64, i int) []int64 {
	n := p.Config().PageSize
	return idx[i*n : (i+1)*n]
}

// selected returns the keys whose place in pattern is '1', and their slots
// in idx of pool p.
func selected(p *hostcache.Pool, keys []string, idx []int64, pattern string) ([]string, []int64) {
	var ks []string
	var slots []int64
	for i, c := range pattern {
		if c == '1' {
			ks = append(ks, keys[i])
			slots = append(slots, pageSlots(p, idx, i)...)
		}
	}
	return ks, slots
}

// transferSpec is one transfer of a BatchExistsV2 table entry: the pool,
// its policy, how many of the keys (the last n) it lists, and whether its
// host indices fail to match its keys.
type transferSpec struct {
	pool   string
	policy hicachefile.HitPolicy
	n      int
	badIdx bool
}

func all(pool string) transferSpec { return transferSpec{pool: pool, policy: hicachefile.AllPages} }
func trailing(pool string, n int) transferSpec {
	return transferSpec{pool: pool, policy: hicachefile.TrailingPages, n: n}
}

var _ = Describe("SGLang's v2 interface: component pools", func() {
	DescribeTable("batch_exists_v2: the KV prefix, then each pool's hit policy, the usable prefix their minimum",
		func(kv, mamba, indexer string, transfers []transferSpec, wantKV int, wantHits map[string]int) {
			pools := newV2Pools()
			s := mustStore(hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "org/hybrid"}, nil)
			pools.register(s)
			keys := keysN("h", len(kv))
			// Write each pool's pages where its pattern says '1'.
			var sets []hicachefile.Transfer
			for name, pattern := range map[string]string{"kv": kv, "mamba": mamba, "indexer": indexer} {
				p := pools[name]
				var idx []int64
				if len(kv) > 0 {
					idx = mustAlloc(p, len(kv))
					fillRandom(p, idx)
				}
				ks, slots := selected(p, keys, idx, pattern)
				sets = append(sets, hicachefile.Transfer{Pool: name, Keys: ks, HostIndices: slots})
			}
			res, err := s.BatchSetV2(sets)
			Expect(err).NotTo(HaveOccurred())
			for _, t := range sets {
				Expect(res[t.Pool]).To(Equal(trues(len(t.Keys))), "pool %s", t.Pool)
			}

			var ts []hicachefile.Transfer
			for _, t := range transfers {
				tr := hicachefile.Transfer{Pool: t.pool, HitPolicy: t.policy, Keys: keys[len(keys)-min(t.n, len(keys)):]}
				if t.badIdx {
					tr.HostIndices = []int64{0, 1, 2} // matches no key count: batch_exists_v2 never reads them
				}
				ts = append(ts, tr)
			}
			got, err := s.BatchExistsV2(keys, ts)
			Expect(err).NotTo(HaveOccurred())
			Expect(got.KVHitPages).To(Equal(wantKV))
			Expect(got.PoolHitPages).To(Equal(wantHits))
		},
		Entry("the empty prefix", "", "", "", []transferSpec{all("indexer"), trailing("mamba", 1)}, 0, map[string]int{}),
		Entry("no KV page for the first key: nothing, and no pool looked at",
			"011111", "111111", "111111", []transferSpec{trailing("mamba", 1), all("indexer")}, 0, map[string]int{}),
		Entry("all_pages with every page", "111111", "000000", "111111", []transferSpec{all("indexer")}, 6, map[string]int{"kv": 6, "indexer": 6}),
		Entry("all_pages stops at the first page without the pool's page",
			"111111", "000000", "110111", []transferSpec{all("indexer")}, 2, map[string]int{"kv": 6, "indexer": 2}),
		Entry("all_pages without the first page: 0, left out of the counts",
			"111111", "000000", "011111", []transferSpec{all("indexer")}, 0, map[string]int{"kv": 6}),
		Entry("trailing_pages of 1 with only the last page", "111111", "000001", "000000", []transferSpec{trailing("mamba", 1)}, 6, map[string]int{"kv": 6, "mamba": 6}),
		Entry("trailing_pages of 1 settles for a shorter prefix", "111111", "000100", "000000", []transferSpec{trailing("mamba", 1)}, 4, map[string]int{"kv": 6, "mamba": 4}),
		Entry("trailing_pages of 2 needs two adjacent pages", "111111", "000101", "000000", []transferSpec{trailing("mamba", 2)}, 0, map[string]int{"kv": 6}),
		Entry("trailing_pages of 2 with two adjacent pages", "111111", "001100", "000000", []transferSpec{trailing("mamba", 2)}, 4, map[string]int{"kv": 6, "mamba": 4}),
		Entry("trailing_pages longer than the KV prefix needs the whole prefix",
			"111000", "111111", "000000", []transferSpec{trailing("mamba", 5)}, 3, map[string]int{"kv": 3, "mamba": 3}),
		Entry("trailing_pages looks only inside the KV prefix", "110111", "000111", "000000", []transferSpec{trailing("mamba", 1)}, 0, map[string]int{"kv": 2}),
		Entry("trailing_pages with no keys counts one page", "111111", "000010", "000000", []transferSpec{trailing("mamba", 0)}, 5, map[string]int{"kv": 6, "mamba": 5}),
		Entry("two pools: the usable prefix is the minimum",
			"111111", "001000", "111101", []transferSpec{all("indexer"), trailing("mamba", 1)}, 3, map[string]int{"kv": 6, "indexer": 4, "mamba": 3}),
		Entry("a pool at 0 ends the loop: later pools are left out",
			"111111", "000000", "111111", []transferSpec{trailing("mamba", 1), all("indexer")}, 0, map[string]int{"kv": 6}),
		Entry("a transfer of the KV pool itself", "111100", "000000", "000000", []transferSpec{all("kv")}, 4, map[string]int{"kv": 4}),
		Entry("a transfer whose indices do not match its keys: batch_exists_v2 ignores them",
			"111111", "000001", "000000", []transferSpec{{pool: "mamba", policy: hicachefile.TrailingPages, n: 1, badIdx: true}}, 6, map[string]int{"kv": 6, "mamba": 6}),
	)

	It("batch_get_v2 and batch_set_v2: a transfer whose indices do not match its keys fails alone", func() {
		pools := newV2Pools()
		s := mustStore(hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "org/hybrid"}, nil)
		pools.register(s)
		keys := keysN("m", 3)
		kvIdx, mIdx := mustAlloc(pools["kv"], 3), mustAlloc(pools["mamba"], 3)
		fillRandom(pools["kv"], kvIdx)
		fillRandom(pools["mamba"], mIdx)
		res, err := s.BatchSetV2([]hicachefile.Transfer{
			{Pool: "kv", Keys: keys, HostIndices: kvIdx},
			{Pool: "mamba", Keys: keys, HostIndices: mIdx[:2]}, // 2 slots for 3 keys of 1 slot
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(res).To(Equal(map[string][]bool{"kv": trues(3), "mamba": {false, false, false}}))
		Expect(s.BatchExistsV2(keys, []hicachefile.Transfer{{Pool: "mamba", Keys: keys[2:], HitPolicy: hicachefile.TrailingPages}})).
			To(Equal(hicachefile.TransferResult{KVHitPages: 0, PoolHitPages: map[string]int{"kv": 3}}))

		want := dataPages(pools["kv"], kvIdx)
		to := mustAlloc(pools["kv"], 3)
		res, err = s.BatchGetV2([]hicachefile.Transfer{
			{Pool: "mamba", Keys: keys, HostIndices: append(mIdx, 0)},
			{Pool: "kv", Keys: keys, HostIndices: to},
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(res).To(Equal(map[string][]bool{"kv": trues(3), "mamba": {false, false, false}}))
		Expect(dataPages(pools["kv"], to)).To(Equal(want))
	})

	It("round-trips every pool's pages byte-exact across a restart", func() {
		dir := GinkgoT().TempDir()
		cfg := hicachefile.Config{Dir: dir, ModelName: "org/hybrid", TPRank: 1, TPSize: 2}
		keys := keysN("r", 5)
		src := newV2Pools()
		s := mustStore(cfg, nil)
		src.register(s)
		var sets []hicachefile.Transfer
		want := map[string][][]byte{}
		for name, p := range src {
			idx := mustAlloc(p, len(keys))
			fillRandom(p, idx)
			want[name] = pagesOf(p, idx)
			sets = append(sets, hicachefile.Transfer{Pool: name, Keys: keys, HostIndices: idx})
		}
		res, err := s.BatchSetV2(sets)
		Expect(err).NotTo(HaveOccurred())
		for name := range src {
			Expect(res[name]).To(Equal(trues(len(keys))))
		}
		Expect(s.Close()).To(Succeed())
		// Each component pool's batch files live apart from the KV pool's.
		Expect(batchFiles(sgname.ComponentV1Dir(cfg, "mamba"))).NotTo(BeEmpty())
		Expect(batchFiles(sgname.ComponentV1Dir(cfg, "indexer"))).NotTo(BeEmpty())

		dst := newV2Pools()
		r := mustStore(cfg, nil)
		dst.register(r)
		Expect(r.BatchExistsV2(keys, []hicachefile.Transfer{{Pool: "indexer"}, {Pool: "mamba", Keys: keys[4:], HitPolicy: hicachefile.TrailingPages}})).
			To(Equal(hicachefile.TransferResult{KVHitPages: 5, PoolHitPages: map[string]int{"kv": 5, "indexer": 5, "mamba": 5}}))
		var gets []hicachefile.Transfer
		into := map[string][]int64{}
		for name, p := range dst {
			mustAlloc(p, 1) // other slots than the writer's
			into[name] = mustAlloc(p, len(keys))
			gets = append(gets, hicachefile.Transfer{Pool: name, Keys: keys, HostIndices: into[name]})
		}
		res, err = r.BatchGetV2(gets)
		Expect(err).NotTo(HaveOccurred())
		for name, p := range dst {
			Expect(res[name]).To(Equal(trues(len(keys))), "pool %s", name)
			Expect(pagesOf(p, into[name])).To(Equal(want[name]), "pool %s", name)
		}
	})

	DescribeTable("reads SGLang's component .bin files, and the copy interface writes SGLang's name",
		func(pool string) {
			pools := newV2Pools()
			cfg := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "org/hybrid", TPRank: 0, TPSize: 2, CPRank: 1, CPSize: 2}
			s := mustStore(cfg, nil)
			pools.register(s)
			p := pools[pool]
			keys := keysN("c", 3)
			from := mustAlloc(p, 3)
			fillRandom(p, from)
			want := pagesOf(p, from)
			// SGLang's Python wrote the first two: the flat page, nothing else.
			for i := range 2 {
				Expect(os.WriteFile(filepath.Join(cfg.Dir, sgname.ComponentFile(cfg, keys[i], pool)), want[i], 0o644)).To(Succeed())
			}
			// The copy interface writes the third under SGLang's name.
			Expect(s.Set(keys[2]+"."+pool, want[2])).To(Succeed())
			name := filepath.Join(cfg.Dir, sgname.ComponentFile(cfg, keys[2], pool))
			Expect(os.ReadFile(name)).To(Equal(want[2]))
			Expect(strings.HasSuffix(name, "c0002."+pool+"_org-hybrid_0_2_cp1_2.bin")).To(BeTrue(), name)

			// KV pages too, so that the prefix reaches the component pages.
			kvIdx := mustAlloc(pools["kv"], 3)
			fillRandom(pools["kv"], kvIdx)
			res, err := s.BatchSetV2([]hicachefile.Transfer{{Pool: "kv", Keys: keys, HostIndices: kvIdx}})
			Expect(err).NotTo(HaveOccurred())
			Expect(res["kv"]).To(Equal(trues(3)))
			Expect(s.BatchExistsV2(keys, []hicachefile.Transfer{{Pool: pool}})).
				To(Equal(hicachefile.TransferResult{KVHitPages: 3, PoolHitPages: map[string]int{"kv": 3, pool: 3}}))

			to := mustAlloc(p, 3)
			res, err = s.BatchGetV2([]hicachefile.Transfer{{Pool: pool, Keys: keys, HostIndices: to}})
			Expect(err).NotTo(HaveOccurred())
			Expect(res[pool]).To(Equal(trues(3)))
			Expect(pagesOf(p, to)).To(Equal(want))
		},
		Entry("a Mamba-style component pool (one slot per page)", "mamba"),
		Entry("an MLA-shaped indexer pool", "indexer"),
	)
})

// pagesOf returns GetDataPage of every page at idx in p, whatever its page
// size.
func pagesOf(p *hostcache.Pool, idx []int64) [][]byte {
	GinkgoHelper()
	n := p.Config().PageSize
	out := make([][]byte, len(idx)/n)
	for i := range out {
		var err error
		out[i], err = p.GetDataPage(idx[i*n])
		Expect(err).NotTo(HaveOccurred())
	}
	return out
}
