package hostcache_test

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

var allDTypes = []hostcache.DType{hostcache.Float16, hostcache.BFloat16, hostcache.Float32, hostcache.Float8E4M3, hostcache.Float8E5M2}

// layoutsOf lists the layouts kind supports: page_head is MHA only.
func layoutsOf(kind hostcache.Kind) []hostcache.Layout {
	if kind == hostcache.MLA {
		return []hostcache.Layout{hostcache.LayerFirst, hostcache.PageFirst, hostcache.PageFirstDirect}
	}
	return []hostcache.Layout{hostcache.LayerFirst, hostcache.PageFirst, hostcache.PageFirstDirect, hostcache.PageHead}
}

func TestDTypeSize(t *testing.T) {
	for _, tc := range []struct {
		dt   hostcache.DType
		want int
	}{
		{hostcache.Float16, 2},
		{hostcache.BFloat16, 2},
		{hostcache.Float32, 4},
		{hostcache.Float8E4M3, 1},
		{hostcache.Float8E5M2, 1},
		{hostcache.Uint8, 1},
		{"float16", 2},
		{"", 0},
		{"float64", 0},
		{"int8", 0},
		{"Float16", 0},
	} {
		t.Run(fmt.Sprintf("%q", tc.dt), func(t *testing.T) {
			if got := tc.dt.Size(); got != tc.want {
				t.Errorf("Size() = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[hostcache.Kind]string{hostcache.MHA: "MHA", hostcache.MLA: "MLA", 7: "Kind(7)", -1: "Kind(-1)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	// bigDim is 2^31, or the largest int where int has 32 bits.
	const bigDim = min(1<<31, math.MaxInt)
	mha := hostcache.Config{Kind: hostcache.MHA, Layout: hostcache.PageHead, DType: hostcache.Float16,
		PageSize: 4, Pages: 3, LayerNum: 2, HeadNum: 2, HeadDim: 8}
	mla := hostcache.Config{Kind: hostcache.MLA, Layout: hostcache.LayerFirst, DType: hostcache.BFloat16,
		PageSize: 4, Pages: 3, LayerNum: 2, KVLoraRank: 8, QKRopeHeadDim: 4}
	with := func(c hostcache.Config, change func(*hostcache.Config)) hostcache.Config {
		change(&c)
		return c
	}
	for _, tc := range []struct {
		name  string
		cfg   hostcache.Config
		valid bool
	}{
		{"MHA", mha, true},
		{"MLA", mla, true},
		{"MLA without rope", with(mla, func(c *hostcache.Config) { c.QKRopeHeadDim = 0 }), true},
		{"MHA ignores MLA fields", with(mha, func(c *hostcache.Config) { c.KVLoraRank, c.QKRopeHeadDim = -5, -5 }), true},
		{"MLA ignores MHA fields", with(mla, func(c *hostcache.Config) { c.HeadNum, c.HeadDim = -5, 0 }), true},
		{"zero value", hostcache.Config{}, false},
		{"MHA PageSize 0", with(mha, func(c *hostcache.Config) { c.PageSize = 0 }), false},
		{"MHA Pages -1", with(mha, func(c *hostcache.Config) { c.Pages = -1 }), false},
		{"MHA LayerNum 0", with(mha, func(c *hostcache.Config) { c.LayerNum = 0 }), false},
		{"MHA HeadNum 0", with(mha, func(c *hostcache.Config) { c.HeadNum = 0 }), false},
		{"MHA HeadDim -1", with(mha, func(c *hostcache.Config) { c.HeadDim = -1 }), false},
		{"MLA KVLoraRank 0", with(mla, func(c *hostcache.Config) { c.KVLoraRank = 0 }), false},
		{"MLA QKRopeHeadDim -1", with(mla, func(c *hostcache.Config) { c.QKRopeHeadDim = -1 }), false},
		{"MLA page_head", with(mla, func(c *hostcache.Config) { c.Layout = hostcache.PageHead }), false},
		{"unknown layout", with(mha, func(c *hostcache.Config) { c.Layout = "page_last" }), false},
		{"unknown dtype", with(mha, func(c *hostcache.Config) { c.DType = "float64" }), false},
		{"unknown kind", with(mha, func(c *hostcache.Config) { c.Kind = 2 }), false},
		{"slots overflow", with(mha, func(c *hostcache.Config) { c.Pages, c.PageSize = math.MaxInt/2, 4 }), false},
		{"row overflow", with(mha, func(c *hostcache.Config) { c.HeadNum, c.HeadDim = math.MaxInt/2, math.MaxInt/2 }), false},
		{"R overflow", with(mla, func(c *hostcache.Config) { c.KVLoraRank, c.QKRopeHeadDim = math.MaxInt, math.MaxInt }), false},
		// With a 64-bit int, 2^62 bytes per half fits in an int64; K and V
		// together do not. With a 32-bit int (bigDim = 2^31-1), the pool
		// overflows the address space.
		{"total overflow by the factor 2 of K and V", with(mha, func(c *hostcache.Config) {
			c.Pages, c.PageSize, c.LayerNum, c.HeadNum, c.HeadDim, c.DType = bigDim, bigDim, 1, 1, 1, hostcache.Float8E4M3
		}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.valid && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case !tc.valid && !errors.Is(err, hostcache.ErrInvalidConfig):
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestSizes checks SizePerToken, PageBytes, BuffersPerPage and Region's size
// for every kind, layout and dtype against DOMAIN.md: MHA 2*L*H*D*it per
// token, MLA L*R*it.
func TestSizes(t *testing.T) {
	const ps, pages, L, H, D, lora, rope = 4, 3, 3, 2, 5, 6, 2
	for _, kind := range []hostcache.Kind{hostcache.MHA, hostcache.MLA} {
		for _, layout := range layoutsOf(kind) {
			for _, dt := range allDTypes {
				t.Run(fmt.Sprintf("%s/%s/%s", kind, layout, dt), func(t *testing.T) {
					cfg := hostcache.Config{Kind: kind, Layout: layout, DType: dt, PageSize: ps, Pages: pages,
						LayerNum: L, HeadNum: H, HeadDim: D, KVLoraRank: lora, QKRopeHeadDim: rope}
					it := map[hostcache.DType]int{hostcache.Float16: 2, hostcache.BFloat16: 2, hostcache.Float32: 4,
						hostcache.Float8E4M3: 1, hostcache.Float8E5M2: 1}[dt]
					perToken, perPage := 2*L*H*D*it, 2
					if kind == hostcache.MLA {
						perToken, perPage = L*(lora+rope)*it, 1
					}
					if layout == hostcache.LayerFirst {
						perPage *= L
					}
					if err := cfg.Validate(); err != nil {
						t.Fatal(err)
					}
					p, err := hostcache.New(cfg)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = p.Close() })
					if got := p.SizePerToken(); got != perToken {
						t.Errorf("SizePerToken() = %d, want %d", got, perToken)
					}
					if got := p.PageBytes(); got != ps*perToken {
						t.Errorf("PageBytes() = %d, want %d", got, ps*perToken)
					}
					if got := len(p.GetDummyFlatDataPage()); got != ps*perToken {
						t.Errorf("len(GetDummyFlatDataPage()) = %d, want %d", got, ps*perToken)
					}
					if got := p.BuffersPerPage(); got != perPage {
						t.Errorf("BuffersPerPage() = %d, want %d", got, perPage)
					}
					if _, n := p.Region(); n != pages*ps*perToken {
						t.Errorf("Region() size = %d, want %d", n, pages*ps*perToken)
					}
					if p.Config() != cfg {
						t.Errorf("Config() = %+v, want %+v", p.Config(), cfg)
					}
				})
			}
		}
	}
}
