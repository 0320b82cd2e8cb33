//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSuffix(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{ModelName: "meta-llama/Llama-3-8B"}, "_meta-llama-Llama-3-8B_0_1"},
		{Config{ModelName: "m", TPRank: 11, TPSize: 12}, "_m_11_12"},
		{Config{ModelName: "m", TPRank: 1, TPSize: 2, PPRank: 3, PPSize: 4}, "_m_1_2_4_3"},
		{Config{ModelName: "m", TPRank: 1, TPSize: 2, PPSize: 1}, "_m_1_2"},
		{Config{ModelName: "a/b/c", IsMLA: true, TPRank: 1, TPSize: 2}, "_a-b-c"},
		{Config{ModelName: "m", IsMLA: true, PPRank: 0, PPSize: 2}, "_m_2_0"},
		// Context parallel: after the PP part, only when CPSize > 1.
		{Config{ModelName: "m", TPRank: 1, TPSize: 2, CPRank: 1, CPSize: 2}, "_m_1_2_cp1_2"},
		{Config{ModelName: "m", TPRank: 1, TPSize: 2, PPRank: 3, PPSize: 4, CPRank: 2, CPSize: 3}, "_m_1_2_4_3_cp2_3"},
		{Config{ModelName: "m", IsMLA: true, TPRank: 1, TPSize: 2, CPRank: 0, CPSize: 8}, "_m_cp0_8"},
		{Config{ModelName: "m", CPRank: 0, CPSize: 1}, "_m_0_1"},
		{Config{ModelName: "", CPRank: 3, CPSize: 4}, "__0_1_cp3_4"},
	} {
		if got := storeOf(t, c.cfg).suffix; got != c.want {
			t.Errorf("suffix of %+v = %q, want %q", c.cfg, got, c.want)
		}
	}
}

func TestNamePredicates(t *testing.T) {
	const tok = "0123456789abcdef"
	ours := Config{ModelName: "model", TPRank: 1, TPSize: 12}                     // _model_1_12
	mla := Config{ModelName: "model", IsMLA: true}                                // _model
	pp := Config{ModelName: "model", TPRank: 1, TPSize: 12, PPRank: 1, PPSize: 2} // _model_1_12_2_1
	d := func(cfg Config) string { return "-" + storeOf(t, cfg).digest }
	type want struct{ batch, tmp, old bool }
	for _, c := range []struct {
		cfg  Config
		name string
		want want
	}{
		// Ours.
		{ours, "b" + tok + "_model_1_12.batch.bin", want{batch: true}},
		{ours, "." + tok + d(ours) + "_model_1_12.tmp", want{tmp: true}},
		{ours, ".l" + tok + d(ours) + "_model_1_12.tmp", want{tmp: true}},
		// The earlier temp names, and another identity's digest.
		{ours, "." + tok + "_model_1_12.tmp", want{}},
		{ours, "." + tok + d(mla) + "_model_1_12.tmp", want{}},
		{ours, "abc123_model_1_12.bin", want{old: true}},
		{ours, ".hidden_model_1_12.bin", want{old: true}},
		{ours, "k_x_model_1_12.bin", want{old: true}}, // ambiguous: taken as ours (see isOldName)
		{ours, "x.y_model_1_12.bin", want{old: true}},
		{mla, "b" + tok + "_model.batch.bin", want{batch: true}},
		{mla, "abc_model.bin", want{old: true}},
		{pp, "b" + tok + "_model_1_12_2_1.batch.bin", want{batch: true}},
		{pp, "abc_model_1_12_2_1.bin", want{old: true}},

		// Another model whose name ends like ours.
		{ours, "b" + tok + "_a_model_1_12.batch.bin", want{}},
		{ours, "." + tok + d(ours) + "_a_model_1_12.tmp", want{}},
		{ours, "abc_a_model_1_12.bin", want{old: true}}, // key "abc_a" of ours
		{mla, "b" + tok + "_a_model.batch.bin", want{}},
		{mla, "abc_a_model.bin", want{old: true}},
		// Another TP rank: 11 vs 1, and 1 vs 11.
		{ours, "b" + tok + "_model_11_12.batch.bin", want{}},
		{ours, "." + tok + d(ours) + "_model_11_12.tmp", want{}},
		{ours, "abc_model_11_12.bin", want{}},
		{Config{ModelName: "model", TPRank: 11, TPSize: 12}, "b" + tok + "_model_1_12.batch.bin", want{}},
		{Config{ModelName: "model", TPRank: 11, TPSize: 12}, "abc1_model_1_12.bin", want{}},
		// MHA vs MLA of the same model.
		{mla, "b" + tok + "_model_1_12.batch.bin", want{}},
		{mla, "." + tok + d(mla) + "_model_1_12.tmp", want{}},
		{mla, "abc_model_1_12.bin", want{}},
		{ours, "b" + tok + "_model.batch.bin", want{}},
		{ours, "abc_model.bin", want{}},
		// Another PP rank or size.
		{pp, "b" + tok + "_model_1_12_2_0.batch.bin", want{}},
		{pp, "abc_model_1_12_2_0.bin", want{}},
		{ours, "b" + tok + "_model_1_12_2_1.batch.bin", want{}},
		{ours, "abc_model_1_12_2_1.bin", want{}},

		// Not the token shape.
		{ours, "b" + tok[:15] + "_model_1_12.batch.bin", want{}},
		{ours, "b" + tok + "0_model_1_12.batch.bin", want{}},
		{ours, "b" + strings.ToUpper(tok) + "_model_1_12.batch.bin", want{}},
		{ours, "b0123456789abcdeg_model_1_12.batch.bin", want{}},
		{ours, "c" + tok + "_model_1_12.batch.bin", want{}},
		{ours, tok + d(ours) + "_model_1_12.tmp", want{}},
		{ours, "." + tok + "_model_1_12.batch.bin", want{}},
		{ours, "b" + tok + "_model_1_12.tmp", want{}},
		{ours, "_model_1_12.batch.bin", want{}},
		{ours, "_model_1_12.bin", want{}},
		{ours, "_model_1_12.tmp", want{}},
		// The old name of key "b<tok>.batch" is not a batch file name.
		{ours, "b" + tok + ".batch_model_1_12.bin", want{old: true}},
		{ours, "abc_model_1_12.bin.tmp", want{}},
		{ours, "v1_model_1_12", want{}},
		{ours, "v1" + d(ours) + "_model_1_12", want{}},
	} {
		s := storeOf(t, c.cfg)
		got := want{batch: s.isBatchName(c.name), tmp: s.isTmpName(c.name), old: s.isOldName(c.name)}
		if got != c.want {
			t.Errorf("store %q, name %q: got %+v, want %+v", s.suffix, c.name, got, c.want)
		}
	}
}

// TestNamesParse checks that the names the store makes are its own.
func TestNamesParse(t *testing.T) {
	for _, cfg := range []Config{
		{ModelName: "model"},
		{ModelName: "org/model", TPRank: 11, TPSize: 12, PPRank: 1, PPSize: 3},
		{ModelName: "deepseek", IsMLA: true},
	} {
		s := storeOf(t, cfg)
		b, tmp := s.batchName(), s.tmpName()
		if !s.isBatchName(b) || s.isTmpName(b) || s.isOldName(b) {
			t.Errorf("batchName %q is not recognised as a batch file only", b)
		}
		if !s.isTmpName(tmp) || s.isBatchName(tmp) || s.isOldName(tmp) {
			t.Errorf("tmpName %q is not recognised as a temp file only", tmp)
		}
		if o := s.oldName("abc"); !s.isOldName(o) || s.isBatchName(o) || s.isTmpName(o) {
			t.Errorf("oldName %q is not recognised as an old file only", o)
		}
		if b == s.batchName() || tmp == s.tmpName() {
			t.Errorf("names repeat")
		}
	}
}

func TestCheckKey(t *testing.T) {
	s := storeOf(t, Config{ModelName: "model"}) // suffix _model_0_1: 10 bytes
	longest := strings.Repeat("k", 255-10-len(".bin"))
	for _, c := range []struct {
		key string
		ok  bool
	}{
		{"abc123", true},
		{"k_x", true},
		{".hidden", true},
		{"...", true},
		{"a.b", true},
		{"-", true},
		{" ", true},
		{"ключ", true},
		{longest, true},
		{"", false},
		{".", false},
		{"..", false},
		{"/", false},
		{"a/b", false},
		{"a/", false},
		{"/a", false},
		{"\x00", false},
		{"a\x00b", false},
		{longest + "k", false},
		{strings.Repeat("k", 1<<16), false},
	} {
		err := s.checkKey(c.key)
		if c.ok && err != nil {
			t.Errorf("checkKey(%.20q) = %v, want nil", c.key, err)
		}
		if !c.ok && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("checkKey(%.20q) = %v, want ErrInvalidKey", c.key, err)
		}
	}
	if n := len(s.oldName(longest)); n != 255 {
		t.Fatalf("the longest key's file name is %d bytes", n)
	}
}

// TestEmptyModelNameLoadsSGLangFiles: SGLang names the files of an unnamed model
// "<key>__0_1.bin"; such a store opens and loads them.
func TestEmptyModelNameLoadsSGLangFiles(t *testing.T) {
	dir := t.TempDir()
	page := bytes.Repeat([]byte{7}, 64)
	if err := os.WriteFile(filepath.Join(dir, "abc__0_1.bin"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Config{Dir: dir}, nil)
	got := make([]byte, len(page))
	if err := s.Get("abc", got); err != nil || !bytes.Equal(got, page) {
		t.Fatalf("Get(abc) = %v", err)
	}
	p, idx := randomPages(t, 1)
	if err := s.RegisterMemPoolHost(p); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BatchSetV1([]string{"v"}, idx); err != nil || !ok[0] {
		t.Fatalf("BatchSetV1 = %v, %v", ok, err)
	}
}
