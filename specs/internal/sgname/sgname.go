// Package sgname computes SGLang's HiCacheFile names for the specs, from
// DOMAIN.md and apart from pkg/hicachefile, so that the specs check the
// store's names against an independent reading of SGLang's rules.
package sgname

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hicache-go/hicache/pkg/hicachefile"
)

// Suffix is SGLang's file-name suffix for cfg: "_" + model with '/'
// replaced by '-', then "_{tp_rank}_{tp_size}" unless MLA, then
// "_{pp_size}_{pp_rank}" when pp_size > 1, then
// "_cp{attn_cp_rank}_{attn_cp_size}" when attn_cp_size > 1.
func Suffix(cfg hicachefile.Config) string {
	s := "_" + strings.ReplaceAll(cfg.ModelName, "/", "-")
	if !cfg.IsMLA {
		s += fmt.Sprintf("_%d_%d", cfg.TPRank, max(cfg.TPSize, 1))
	}
	if cfg.PPSize > 1 {
		s += fmt.Sprintf("_%d_%d", cfg.PPSize, cfg.PPRank)
	}
	if cfg.CPSize > 1 {
		s += fmt.Sprintf("_cp%d_%d", cfg.CPRank, cfg.CPSize)
	}
	return s
}

// ComponentFile is the name of SGLang's file of pool's page of key: the
// key "{key}.{pool}" suffixed, for any pool but "kv", whose pages keep the
// plain key.
func ComponentFile(cfg hicachefile.Config, key, pool string) string {
	if pool != "kv" {
		key += "." + pool
	}
	return key + Suffix(cfg) + ".bin"
}

// Digest is the identity digest of a store of cfg, as the format doc
// (docs/format.md, Names) defines it: the first 8 bytes of the
// SHA-256 of the identity fields joined by NUL, in hex.
func Digest(cfg hicachefile.Config) string { return digest(cfg, "") }

// digest is Digest of the store of the component pool pool ("" for the KV
// pool's store).
func digest(cfg hicachefile.Config, pool string) string {
	f := []string{"hicache-identity", "model=" + cfg.ModelName}
	if cfg.IsMLA {
		f = append(f, "mla=1")
	} else {
		f = append(f, "mla=0", fmt.Sprintf("tp=%d/%d", cfg.TPRank, max(cfg.TPSize, 1)))
	}
	f = append(f, fmt.Sprintf("pp=%d/%d", cfg.PPRank, max(cfg.PPSize, 1)))
	if cfg.CPSize > 1 {
		f = append(f, fmt.Sprintf("cp=%d/%d", cfg.CPRank, cfg.CPSize))
	}
	if pool != "" {
		f = append(f, "pool="+pool)
	}
	sum := sha256.Sum256([]byte(strings.Join(f, "\x00")))
	return hex.EncodeToString(sum[:8])
}

// V1Dir is where a store of cfg keeps its batch files:
// Dir/v1-<digest><suffix>.
func V1Dir(cfg hicachefile.Config) string {
	return filepath.Join(cfg.Dir, "v1-"+Digest(cfg)+Suffix(cfg))
}

// ComponentV1Dir is where a store of cfg keeps the batch files of the
// component pool pool: Dir/v1-<digest>.<pool><suffix>, the digest covering
// the pool's name.
func ComponentV1Dir(cfg hicachefile.Config, pool string) string {
	return filepath.Join(cfg.Dir, "v1-"+digest(cfg, pool)+"."+pool+Suffix(cfg))
}

// LegacyV1Dir is where the earlier naming kept a store's batch files,
// shared by every identity of the suffix: Dir/v1<suffix>.
func LegacyV1Dir(cfg hicachefile.Config) string {
	return filepath.Join(cfg.Dir, "v1"+Suffix(cfg))
}

// TmpName is a temp file name of a store of cfg made by name, with the
// 16-hex-digit token tok: .<tok>-<digest><suffix>.tmp.
func TmpName(cfg hicachefile.Config, tok string) string {
	return "." + tok + "-" + Digest(cfg) + Suffix(cfg) + ".tmp"
}
