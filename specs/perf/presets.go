package perf

import (
	"fmt"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// preset is a model whose KV pages the comparison moves: the pool's shape
// and the store's naming.
type preset struct {
	name      string
	model     string // the store's ModelName
	tpSize    int
	pool      hostcache.Config // Pages is set per run
	pageBytes int
}

// presets lists every preset, in the order -perf-presets documents them.
// All use page_first, SGLang's layout for zero-copy storage backends, and a
// page size of 64 tokens.
var presets = []preset{
	// The seed's mock: MHA, 4 fp16 values per token (K and V of one head of
	// dim 2 in one layer), 512-byte pages.
	mustPreset(preset{name: "seed", model: "seed-mock", tpSize: 1, pool: hostcache.Config{
		Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.Float16,
		PageSize: 64, LayerNum: 1, HeadNum: 1, HeadDim: 2,
	}}),
	// Llama-3-8B: 32 layers, 8 KV heads of dim 128, bf16: 8 MiB pages.
	mustPreset(preset{name: "llama3-8b", model: "meta-llama/Llama-3.1-8B-Instruct", tpSize: 1, pool: hostcache.Config{
		Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
		PageSize: 64, LayerNum: 32, HeadNum: 8, HeadDim: 128,
	}}),
	// DeepSeek-V3: MLA, 61 layers, kv_lora_rank 512 + rope 64, bf16: about
	// 4.3 MiB pages, the same on every TP rank.
	mustPreset(preset{name: "deepseek-v3", model: "deepseek-ai/DeepSeek-V3", tpSize: 1, pool: hostcache.Config{
		Kind: hostcache.MLA, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
		PageSize: 64, LayerNum: 61, KVLoraRank: 512, QKRopeHeadDim: 64,
	}}),
	// Llama-3-70B at TP=8: 80 layers, one KV head of dim 128 per rank, bf16:
	// 2.5 MiB pages.
	mustPreset(preset{name: "llama3-70b-tp8", model: "meta-llama/Llama-3.1-70B-Instruct", tpSize: 8, pool: hostcache.Config{
		Kind: hostcache.MHA, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
		PageSize: 64, LayerNum: 80, HeadNum: 1, HeadDim: 128,
	}}),
}

// mustPreset fills in pageBytes from the pool's geometry, and panics on a
// preset that does not describe a valid pool.
func mustPreset(p preset) preset {
	cfg := p.pool
	cfg.Pages = 1
	pool, err := hostcache.New(cfg)
	if err != nil {
		panic(fmt.Sprintf("perf: preset %s: %v", p.name, err))
	}
	p.pageBytes = pool.PageBytes()
	if err := pool.Close(); err != nil {
		panic(fmt.Sprintf("perf: preset %s: %v", p.name, err))
	}
	return p
}

func presetNames() []string {
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.name
	}
	return names
}

func presetByName(name string) (preset, bool) {
	for _, p := range presets {
		if p.name == name {
			return p, true
		}
	}
	return preset{}, false
}

// storeConfig is the store configuration for this preset in dir.
func (p preset) storeConfig(dir string) hicachefile.Config {
	return hicachefile.Config{
		Dir:       dir,
		ModelName: p.model,
		TPSize:    p.tpSize,
		IsMLA:     p.pool.Kind == hostcache.MLA,
	}
}

// label is how reports name the preset: "llama3-8b, 8.0 MiB pages".
func (p preset) label() string {
	return fmt.Sprintf("%s, %s pages", p.name, formatBytes(int64(p.pageBytes)))
}
