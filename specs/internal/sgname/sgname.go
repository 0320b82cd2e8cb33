// Package sgname computes SGLang's HiCacheFile names for the specs, from
// DOMAIN.md and apart from pkg/hicachefile, so that the specs check the
// store's names against an independent reading of SGLang's rules.
package sgname

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hicache-go/hicache/pkg/hicachefile"
)

// Suffix is SGLang's file-name suffix for cfg: "_" + model with '/'
// replaced by '-', then "_{tp_rank}_{tp_size}" unless MLA, then
// "_{pp_size}_{pp_rank}" when pp_size > 1.
func Suffix(cfg hicachefile.Config) string {
	s := "_" + strings.ReplaceAll(cfg.ModelName, "/", "-")
	if !cfg.IsMLA {
		s += fmt.Sprintf("_%d_%d", cfg.TPRank, max(cfg.TPSize, 1))
	}
	if cfg.PPSize > 1 {
		s += fmt.Sprintf("_%d_%d", cfg.PPSize, cfg.PPRank)
	}
	return s
}

// V1Dir is where a store of cfg keeps its batch files: Dir/v1<suffix>.
func V1Dir(cfg hicachefile.Config) string {
	return filepath.Join(cfg.Dir, "v1"+Suffix(cfg))
}
