//go:build linux

package hicachefile

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"model only", Config{ModelName: "m"}, true},
		{"every field", Config{Dir: "/x", ModelName: "a/b", TPRank: 3, TPSize: 4, PPRank: 1, PPSize: 2, IsMLA: true, MaxBatchFileBytes: 1, Sync: true}, true},
		{"TPSize 0 means 1", Config{ModelName: "m", TPRank: 0, TPSize: 0}, true},
		{"no model, as SGLang allows", Config{}, true},
		{"NUL in model", Config{ModelName: "a\x00b"}, false},
		{"TPRank == TPSize", Config{ModelName: "m", TPRank: 2, TPSize: 2}, false},
		{"TPRank with default TPSize", Config{ModelName: "m", TPRank: 1}, false},
		{"negative TPRank", Config{ModelName: "m", TPRank: -1, TPSize: 2}, false},
		{"negative TPSize", Config{ModelName: "m", TPSize: -1}, false},
		{"PPRank == PPSize", Config{ModelName: "m", PPRank: 2, PPSize: 2}, false},
		{"negative PPRank", Config{ModelName: "m", PPRank: -1, PPSize: 2}, false},
		{"negative PPSize", Config{ModelName: "m", PPSize: -2}, false},
		{"negative MaxBatchFileBytes", Config{ModelName: "m", MaxBatchFileBytes: -1}, false},
		{"model too long for any file name", Config{ModelName: strings.Repeat("m", 300)}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.ok && err != nil {
				t.Fatalf("Validate = %v", err)
			}
			if !c.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			if !c.ok {
				if _, err := New(c.cfg); !errors.Is(err, ErrInvalidConfig) {
					t.Fatalf("New = %v, want ErrInvalidConfig", err)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv("SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR", "")
	t.Setenv("HICACHE_FILE_DIR", "/from/env")
	c := Config{ModelName: "m"}.withDefaults()
	if c.Dir != "/from/env" || c.TPSize != 1 || c.PPSize != 1 || c.MaxBatchFileBytes != DefaultMaxBatchFileBytes ||
		c.PollInterval != DefaultPollInterval {
		t.Fatalf("defaults = %+v", c)
	}
	if c := (Config{ModelName: "m", PollInterval: -1}).withDefaults(); c.PollInterval != -1 {
		t.Fatalf("PollInterval -1 became %v; negative means mtime only", c.PollInterval)
	}
	t.Setenv("HICACHE_FILE_DIR", "")
	if c := (Config{ModelName: "m"}).withDefaults(); !strings.HasSuffix(c.Dir, filepath.Join("", "hicache")) {
		t.Fatalf("default Dir = %q", c.Dir)
	}
}

// TestLongModelName: every ModelName that Validate accepts must give a
// store that can write a short key through both interfaces. The store's own
// temp and batch file names carry the suffix too, and are longer than the
// old-format name of a short key.
func TestLongModelName(t *testing.T) {
	p := newPool(t, mhaCfg)
	idx, err := p.Alloc(mhaCfg.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	page := p.GetDummyFlatDataPage()
	accepted := 0
	for n := 200; n <= 260; n++ {
		cfg := Config{Dir: t.TempDir(), ModelName: strings.Repeat("m", n)}
		if cfg.Validate() != nil {
			continue
		}
		accepted = n
		s, err := New(cfg)
		if err != nil {
			t.Fatalf("ModelName of %d bytes: Validate accepts it, New = %v", n, err)
		}
		if err := s.RegisterMemPoolHost(p); err != nil {
			t.Fatal(err)
		}
		if err := s.Set("k", page); err != nil {
			t.Errorf("ModelName of %d bytes: Set(k) = %v", n, err)
		}
		if ok, err := s.BatchSetV1([]string{"k2"}, idx); err != nil || !ok[0] {
			t.Errorf("ModelName of %d bytes: BatchSetV1 = %v, %v", n, ok, err)
		}
		_ = s.Close()
		if t.Failed() {
			break
		}
	}
	if accepted < 200 {
		t.Fatalf("Validate rejects every ModelName of 200 bytes or more")
	}
}

// TestSGLangDirEnv: with Config.Dir empty, SGLang's own variable names the
// directory first, then HICACHE_FILE_DIR.
func TestSGLangDirEnv(t *testing.T) {
	t.Setenv("SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR", "/sglang/dir")
	t.Setenv("HICACHE_FILE_DIR", "/ours")
	if got := (Config{ModelName: "m"}).withDefaults().Dir; got != "/sglang/dir" {
		t.Errorf("Dir = %q, want SGLang's /sglang/dir", got)
	}
	t.Setenv("SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR", "")
	if got := (Config{ModelName: "m"}).withDefaults().Dir; got != "/ours" {
		t.Errorf("Dir = %q, want /ours", got)
	}
}
