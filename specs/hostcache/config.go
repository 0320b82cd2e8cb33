package hostcache

import (
	"math"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// mha and mla return the spec shape with change applied.
func mha(change func(*hostcache.Config)) hostcache.Config {
	c := specShape.Of(hostcache.MHA, hostcache.PageFirst, hostcache.Float16)
	change(&c)
	return c
}

func mla(change func(*hostcache.Config)) hostcache.Config {
	c := specShape.Of(hostcache.MLA, hostcache.PageFirst, hostcache.Float16)
	change(&c)
	return c
}

var _ = Describe("Config", func() {
	DescribeTable("an invalid Config is ErrInvalidConfig from Validate and New",
		func(cfg hostcache.Config) {
			Expect(noPanic(cfg.Validate)).To(MatchError(hostcache.ErrInvalidConfig))
			var p *hostcache.Pool
			err := noPanic(func() (err error) { p, err = hostcache.New(cfg); return err })
			Expect(err).To(MatchError(hostcache.ErrInvalidConfig))
			Expect(p).To(BeNil())
		},
		Entry("MHA PageSize 0", mha(func(c *hostcache.Config) { c.PageSize = 0 })),
		Entry("MHA PageSize -1", mha(func(c *hostcache.Config) { c.PageSize = -1 })),
		Entry("MHA Pages 0", mha(func(c *hostcache.Config) { c.Pages = 0 })),
		Entry("MHA Pages -1", mha(func(c *hostcache.Config) { c.Pages = -1 })),
		Entry("MHA LayerNum 0", mha(func(c *hostcache.Config) { c.LayerNum = 0 })),
		Entry("MHA LayerNum -1", mha(func(c *hostcache.Config) { c.LayerNum = -1 })),
		Entry("MHA HeadNum 0", mha(func(c *hostcache.Config) { c.HeadNum = 0 })),
		Entry("MHA HeadNum -1", mha(func(c *hostcache.Config) { c.HeadNum = -1 })),
		Entry("MHA HeadDim 0", mha(func(c *hostcache.Config) { c.HeadDim = 0 })),
		Entry("MHA HeadDim -1", mha(func(c *hostcache.Config) { c.HeadDim = -1 })),
		Entry("MLA PageSize 0", mla(func(c *hostcache.Config) { c.PageSize = 0 })),
		Entry("MLA Pages -1", mla(func(c *hostcache.Config) { c.Pages = -1 })),
		Entry("MLA LayerNum 0", mla(func(c *hostcache.Config) { c.LayerNum = 0 })),
		Entry("MLA KVLoraRank 0", mla(func(c *hostcache.Config) { c.KVLoraRank = 0 })),
		Entry("MLA KVLoraRank -1", mla(func(c *hostcache.Config) { c.KVLoraRank = -1 })),
		Entry("MLA QKRopeHeadDim -1", mla(func(c *hostcache.Config) { c.QKRopeHeadDim = -1 })),
		Entry("the zero Config (no layout, no dtype)", hostcache.Config{}),
		Entry("an empty dtype", mha(func(c *hostcache.Config) { c.DType = "" })),
		Entry("an unknown dtype", mha(func(c *hostcache.Config) { c.DType = "float64" })),
		Entry("a dtype in the wrong case", mla(func(c *hostcache.Config) { c.DType = "Float16" })),
		Entry("an empty layout", mha(func(c *hostcache.Config) { c.Layout = "" })),
		Entry("an unknown layout", mha(func(c *hostcache.Config) { c.Layout = "page_last" })),
		Entry("an unknown MLA layout", mla(func(c *hostcache.Config) { c.Layout = "head_first" })),
		Entry("an unknown kind", mha(func(c *hostcache.Config) { c.Kind = hostcache.MLA + 1 })),
		Entry("a negative kind", mha(func(c *hostcache.Config) { c.Kind = -1 })),
		Entry("page_head with MLA", mla(func(c *hostcache.Config) { c.Layout = hostcache.PageHead })),
		Entry("Pages*PageSize overflowing", mha(func(c *hostcache.Config) { c.Pages, c.PageSize = math.MaxInt, 2 })),
		Entry("HeadNum*HeadDim*itemsize overflowing", mha(func(c *hostcache.Config) { c.HeadNum, c.HeadDim = math.MaxInt/4, 8 })),
		Entry("the whole buffer just overflowing: 2^30 pages x 2^20 x 2^10 layers x 4 bytes x K and V",
			hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.LayerFirst, DType: hostcache.Float32,
				Pages: 1 << 30, PageSize: 1 << 20, LayerNum: 1 << 10, HeadNum: 1, HeadDim: 1}),
		Entry("KVLoraRank+QKRopeHeadDim overflowing", mla(func(c *hostcache.Config) { c.KVLoraRank, c.QKRopeHeadDim = math.MaxInt, math.MaxInt })),
		Entry("KVLoraRank+QKRopeHeadDim overflowing by one", mla(func(c *hostcache.Config) { c.KVLoraRank, c.QKRopeHeadDim = 1, math.MaxInt })),
		Entry("MLA LayerNum*R overflowing", mla(func(c *hostcache.Config) { c.LayerNum, c.KVLoraRank = math.MaxInt/2, 4 })),
	)

	DescribeTable("a valid Config builds a pool, ignoring the other kind's fields",
		func(cfg hostcache.Config, wantPerToken int) {
			Expect(cfg.Validate()).To(Succeed())
			p, err := hostcache.New(cfg)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(p.Close)
			Expect(p.Config()).To(Equal(cfg))
			Expect(p.SizePerToken()).To(Equal(wantPerToken))
			Expect(p.PageBytes()).To(Equal(cfg.PageSize * wantPerToken))
			Expect(p.Available()).To(Equal(cfg.Pages * cfg.PageSize))
		},
		Entry("MHA with MLA fields negative", mha(func(c *hostcache.Config) { c.KVLoraRank, c.QKRopeHeadDim = -1, -1 }),
			2*layers*heads*headDim*2),
		Entry("MLA with MHA fields zero and negative", mla(func(c *hostcache.Config) { c.HeadNum, c.HeadDim = 0, -1 }),
			layers*rowMLA*2),
		Entry("MLA without a rope part", mla(func(c *hostcache.Config) { c.QKRopeHeadDim = 0 }),
			layers*loraRank*2),
		Entry("MHA in bfloat16", mha(func(c *hostcache.Config) { c.DType = hostcache.BFloat16 }),
			2*layers*heads*headDim*2),
		Entry("MLA in float8_e5m2", mla(func(c *hostcache.Config) { c.DType = hostcache.Float8E5M2 }),
			layers*rowMLA),
		Entry("pages of one token", hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.PageHead, DType: hostcache.Float32,
			PageSize: 1, Pages: slots, LayerNum: 1, HeadNum: 1, HeadDim: 1}, 2*4),
	)
})
