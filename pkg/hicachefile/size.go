package hicachefile

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// The environment variables SGLang's LRUFileEvictor falls back to when its
// extra_config does not set max_size, min_free_space or eviction_ratio.
const (
	envMaxSize       = "SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE"
	envMinFreeSpace  = "SGLANG_HICACHE_FILE_BACKEND_MIN_FREE_SPACE"
	envEvictionRatio = "SGLANG_HICACHE_FILE_BACKEND_EVICTION_RATIO"
)

// DefaultEvictionRatio is Config.EvictionRatio when it is zero or outside
// (0, 1], as SGLang's eviction_ratio defaults.
const DefaultEvictionRatio = 0.9

// ParseSize parses a size in bytes as SGLang's HiCacheFile reads max_size
// and min_free_space: _parse_size_to_bytes in sgl-project/sglang
// python/sglang/srt/mem_cache/storage/file/lru_file_evictor.py (matched at
// commit 09d1a69), which strips the value, takes "" and "0" as disabled,
// clamps a negative result to 0 and disables on an invalid value, over
// human_readable_int (python/sglang/srt/utils/common.py) with the rules
// SGLang states for it:
//
//   - surrounding white space is ignored;
//   - "" and "0" disable the bound: 0, nil;
//   - a number with an SI suffix k, M, G or T (10^3, 10^6, 10^9, 10^12)
//     may have decimals: "25.6k" is 25600, computed as SGLang does, the
//     float64 product truncated toward zero;
//   - a number with an IEC suffix Ki, Mi, Gi or Ti (2^10 ... 2^40) must be
//     an integer: "1Ki" is 1024, "1.5Gi" is invalid;
//   - suffixes are case-sensitive ("1K" and "1g" are invalid), with no
//     space before them and no trailing "B";
//   - otherwise the string must be a plain integer as Python's int reads
//     it: an optional sign, ASCII digits, single underscores between
//     digits. A negative one disables the bound (0, nil), as SGLang clamps
//     it to 0.
//
// Anything else is invalid: ParseSize returns 0 and an error wrapping
// ErrInvalidConfig, and the caller should treat the bound as disabled, as
// SGLang does after a warning. So the result is always at least 0, and
// is 0 exactly when the bound is disabled. A value that does not fit in
// an int64 is invalid.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	bad := func(why string) (int64, error) {
		return 0, fmt.Errorf("%w: size %q: %s", ErrInvalidConfig, s, why)
	}
	num, mult, iec := splitSizeSuffix(s)
	if mult == 0 {
		n, ok := parsePyInt(s)
		if !ok {
			return bad("not an integer, nor a number with a suffix k, M, G, T, Ki, Mi, Gi or Ti")
		}
		return max(0, n), nil
	}
	if !isSizeNumber(num) {
		return bad("the number before the suffix is not digits with optional decimals")
	}
	if iec {
		if strings.IndexByte(num, '.') >= 0 {
			return bad("decimals are not allowed with a binary suffix")
		}
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return bad("out of range")
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return bad("out of range")
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 || math.IsInf(v, 0) {
		return bad("out of range")
	}
	return int64(v), nil
}

// splitSizeSuffix splits s into its number and the multiplier of its SGLang
// size suffix; mult is 0 when s has none.
func splitSizeSuffix(s string) (num string, mult int64, iec bool) {
	for _, u := range [...]struct {
		suffix string
		mult   int64
		iec    bool
	}{
		{"Ki", 1 << 10, true}, {"Mi", 1 << 20, true}, {"Gi", 1 << 30, true}, {"Ti", 1 << 40, true},
		{"k", 1e3, false}, {"M", 1e6, false}, {"G", 1e9, false}, {"T", 1e12, false},
	} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			return n, u.mult, u.iec
		}
	}
	return s, 0, false
}

// isSizeNumber reports whether s is digits, optionally followed by a '.'
// and more digits: SGLang's (\d+(?:\.\d+)?).
func isSizeNumber(s string) bool {
	whole, frac, dot := strings.Cut(s, ".")
	return isDigits(whole) && (!dot || isDigits(frac))
}

// parsePyInt parses s as Python's int(s) does for ASCII input: an optional
// sign, then digits with single underscores between them.
func parsePyInt(s string) (int64, bool) {
	body := strings.TrimLeft(s, "+-")
	if len(s)-len(body) > 1 || body == "" || body[0] == '_' || body[len(body)-1] == '_' || strings.Contains(body, "__") {
		return 0, false
	}
	digits := strings.ReplaceAll(body, "_", "")
	if !isDigits(digits) {
		return 0, false
	}
	n, err := strconv.ParseInt(s[:len(s)-len(body)]+digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// evictionRatio returns the eviction ratio in effect for the configured
// ratio r: r itself in (0, 1]; for 0, with env,
// $SGLANG_HICACHE_FILE_BACKEND_EVICTION_RATIO if it parses as a float in
// (0, 1]; else DefaultEvictionRatio.
func evictionRatio(r float64, env bool) float64 {
	if r == 0 && env {
		if v, err := strconv.ParseFloat(strings.TrimSpace(os.Getenv(envEvictionRatio)), 64); err == nil {
			r = v
		}
	}
	if !(r > 0 && r <= 1) {
		return DefaultEvictionRatio
	}
	return r
}
