//go:build linux

package hicachefile

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

// TestParseSizeSGLangCases pins ParseSize to SGLang's human_readable_int and
// _parse_size_to_bytes: SI suffixes with decimals, IEC suffixes integers
// only, case-sensitive, plain integers as Python's int reads them, and
// "0", "" and negatives disabling the bound.
func TestParseSizeSGLangCases(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    int64
		invalid bool
	}{
		{"1k", 1000, false},
		{"1Ki", 1024, false},
		{"25.6k", 25600, false},
		{"1.5Gi", 0, true},
		{"200G", 200_000_000_000, false},
		{"0", 0, false},
		{"", 0, false},
		{"abc", 0, true},
		{"1M", 1_000_000, false},
		{"1Mi", 1 << 20, false},
		{"1Gi", 1 << 30, false},
		{"2Ti", 2 << 40, false},
		{"1T", 1_000_000_000_000, false},
		{"0.5G", 500_000_000, false},
		{"1.005k", 1004, false}, // float64 1.005*1000 = 1004.999..., truncated as Python's int()
		{"8.2M", 8199999, false},
		{"1048576", 1048576, false},
		{"  200G  ", 200_000_000_000, false},
		{" ", 0, false},
		{"1_000", 1000, false},
		{"+7", 7, false},
		{"-5", 0, false}, // SGLang clamps to 0: disabled
		{"1K", 0, true},  // case-sensitive
		{"1g", 0, true},
		{"1m", 0, true},
		{"1ki", 0, true},
		{"1KiB", 0, true},
		{"1GB", 0, true},
		{"1 G", 0, true},
		{"1.5", 0, true},
		{"1e3", 0, true},
		{".5k", 0, true},
		{"5.k", 0, true},
		{"-1k", 0, true},
		{"k", 0, true},
		{"Gi", 0, true},
		{"1__0", 0, true},
		{"_1", 0, true},
		{"1_", 0, true},
		{"0x10", 0, true},
		{"99999999999999999999", 0, true},
		{"9000000Ti", 0, true},
		{"9999999999T", 0, true},
	} {
		got, err := ParseSize(c.in)
		if c.invalid {
			if err == nil || !errors.Is(err, ErrInvalidConfig) || got != 0 {
				t.Errorf("ParseSize(%q) = %d, %v; want 0 and an ErrInvalidConfig", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

// FuzzParseSize: ParseSize never panics, never returns a negative size,
// returns 0 with every error, agrees with strconv on plain non-negative
// integers, and scales an integer by each IEC suffix exactly.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1k", "1Ki", "25.6k", "1.5Gi", "200G", "0", "", "abc", "-3", "1_0", "7Ti"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseSize(s)
		if got < 0 || (err != nil && got != 0) {
			t.Fatalf("ParseSize(%q) = %d, %v", s, got, err)
		}
		if n, perr := strconv.ParseInt(s, 10, 64); perr == nil && n >= 0 && isDigits(s) {
			if err != nil || got != n {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", s, got, err, n)
			}
			for i, suffix := range []string{"Ki", "Mi", "Gi", "Ti"} {
				mult := int64(1) << (10 * (i + 1))
				g, err := ParseSize(s + suffix)
				if n > math.MaxInt64/mult {
					if err == nil {
						t.Fatalf("ParseSize(%q) = %d, want an overflow error", s+suffix, g)
					}
					continue
				}
				if err != nil || g != n*mult {
					t.Fatalf("ParseSize(%q) = %d, %v; want %d", s+suffix, g, err, n*mult)
				}
			}
		}
		if strings.Contains(s, ".") && strings.HasSuffix(s, "i") && err == nil && got != 0 {
			t.Fatalf("ParseSize(%q) = %d: decimals with an IEC suffix must be invalid", s, got)
		}
	})
}

// TestEvictionRatioDefaults: 0 and anything outside (0, 1] mean 0.9, as
// SGLang's eviction_ratio; the environment fills in a zero.
func TestEvictionRatioDefaults(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{
		{0, 0.9}, {-0.5, 0.9}, {1.5, 0.9}, {math.NaN(), 0.9}, {math.Inf(1), 0.9},
		{1, 1}, {0.5, 0.5}, {1e-9, 1e-9},
	} {
		if got := (Config{EvictionRatio: c.in}).withDefaults().EvictionRatio; got != c.want {
			t.Errorf("EvictionRatio %v gives %v, want %v", c.in, got, c.want)
		}
	}
	t.Setenv(envEvictionRatio, "0.5")
	if got := (Config{}).withDefaults().EvictionRatio; got != 0.5 {
		t.Errorf("EvictionRatio from the environment 0.5 gives %v", got)
	}
	t.Setenv(envEvictionRatio, "2")
	if got := (Config{}).withDefaults().EvictionRatio; got != 0.9 {
		t.Errorf("EvictionRatio from the environment 2 gives %v, want 0.9", got)
	}
	t.Setenv(envEvictionRatio, "x")
	if got := (Config{EvictionRatio: 0.25}).withDefaults().EvictionRatio; got != 0.25 {
		t.Errorf("a set EvictionRatio 0.25 gives %v", got)
	}
}

// TestSizesFromEnvironment: a zero MaxBytes or MinFreeBytes takes SGLang's
// environment variable, read with ParseSize; an invalid one disables.
func TestSizesFromEnvironment(t *testing.T) {
	t.Setenv(envMaxSize, "1Gi")
	t.Setenv(envMinFreeSpace, "2.5k")
	c := Config{}.withDefaults()
	if c.MaxBytes != 1<<30 || c.MinFreeBytes != 2500 {
		t.Fatalf("MaxBytes %d, MinFreeBytes %d from the environment; want %d, 2500", c.MaxBytes, c.MinFreeBytes, 1<<30)
	}
	if c := (Config{MaxBytes: 5}).withDefaults(); c.MaxBytes != 5 {
		t.Fatalf("a set MaxBytes 5 became %d", c.MaxBytes)
	}
	t.Setenv(envMaxSize, "1.5Gi")
	if c := (Config{}).withDefaults(); c.MaxBytes != 0 {
		t.Fatalf("an invalid environment size gave MaxBytes %d, want 0 (disabled)", c.MaxBytes)
	}
}

// TestNoEnvIgnoresSGLangEnvironment: with NoEnv a zero MaxBytes,
// MinFreeBytes and EvictionRatio stay as given, whatever SGLang's
// environment variables say; without it they are read from there.
func TestNoEnvIgnoresSGLangEnvironment(t *testing.T) {
	t.Setenv(envMaxSize, "1Mi")
	t.Setenv(envMinFreeSpace, "2k")
	t.Setenv(envEvictionRatio, "0.5")
	got := Config{Dir: t.TempDir(), NoEnv: true}.withDefaults()
	if got.MaxBytes != 0 || got.MinFreeBytes != 0 || got.EvictionRatio != DefaultEvictionRatio {
		t.Errorf("NoEnv: MaxBytes %d, MinFreeBytes %d, EvictionRatio %v; want 0, 0, %v",
			got.MaxBytes, got.MinFreeBytes, got.EvictionRatio, DefaultEvictionRatio)
	}
	got = Config{Dir: t.TempDir()}.withDefaults()
	if got.MaxBytes != 1<<20 || got.MinFreeBytes != 2000 || got.EvictionRatio != 0.5 {
		t.Errorf("from the environment: MaxBytes %d, MinFreeBytes %d, EvictionRatio %v", got.MaxBytes, got.MinFreeBytes, got.EvictionRatio)
	}
}
