//go:build linux

package hicachefile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// badKeys are keys of every kind checkKey refuses.
var badKeys = map[string]string{
	"empty":    "",
	"dot":      ".",
	"dotdot":   "..",
	"slash":    "a/b",
	"nul":      "a\x00b",
	"long":     strings.Repeat("k", 250),
	"nul-tail": strings.Repeat("0", 64) + "\x00",
}

// TestValidKeyMatchesCheckKey pins the read path's fast key check to
// checkKey on keys of every length and every position of '/' and NUL.
func TestValidKeyMatchesCheckKey(t *testing.T) {
	s, err := New(Config{Dir: t.TempDir(), ModelName: "m"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check := func(k string) {
		if got, want := s.validKey(k), s.checkKey(k) == nil; got != want {
			t.Errorf("validKey(%q) = %v, checkKey accepts it: %v", k, got, want)
		}
	}
	for _, k := range badKeys {
		check(k)
	}
	for n := 1; n <= 40; n++ {
		base := []byte(strings.Repeat("a", n))
		check(string(base))
		for i := range n {
			for _, c := range []byte{0, '/', 0x2e, 0x80, 0xff, 0x01, 0x30} {
				b := bytes.Clone(base)
				b[i] = c
				check(string(b))
			}
		}
	}
	for n := 230; n <= 260; n++ {
		check(strings.Repeat("b", n))
	}
}

// TestBatchGetV1RefusesInvalidKeys reads a batch back as it was written,
// the path whose keys are guessed rather than looked up, with an invalid
// key of each kind in its middle, among them one made of the batch file's
// own index bytes: each invalid key is a miss, every other key is served
// its own page.
func TestBatchGetV1RefusesInvalidKeys(t *testing.T) {
	cfg := mhaCfg
	cfg.Layout = hostcache.PageFirst
	p := newPool(t, cfg)
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
	const n = 8
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%064x", i+1)
	}
	src, _ := p.Alloc(n * cfg.PageSize)
	dst, _ := p.Alloc(n * cfg.PageSize)
	fillRandom(t, p, src)
	if ok, err := s.BatchSetV1(keys, src); err != nil || !all(ok) {
		t.Fatalf("BatchSetV1 = %v, %v", ok, err)
	}
	// The raw bytes of keys[2]'s entry through keys[3]'s, from the file.
	loc, found := s.Locate(keys[2])
	if !found {
		t.Fatal("Locate missed a key just written")
	}
	raw, err := os.ReadFile(filepath.Clean(loc.Path))
	if err != nil {
		t.Fatal(err)
	}
	a := bytes.LastIndex(raw, []byte(keys[2]))
	b := bytes.LastIndex(raw, []byte(keys[3]))
	if a < 2 || b < a {
		t.Fatal("the keys' entries were not found in the batch file")
	}
	cases := map[string]string{"index-bytes": string(raw[a-2 : b+len(keys[3])])}
	for name, k := range badKeys {
		cases[name] = k
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			for _, pos := range []int{1, 3, n - 2} {
				ks := append([]string(nil), keys...)
				ks[pos] = bad
				fillRandom(t, p, dst)
				ok, err := s.BatchGetV1(ks, dst)
				if err != nil {
					t.Fatalf("BatchGetV1 = %v", err)
				}
				for i := range ks {
					if i == pos {
						if ok[i] {
							t.Errorf("invalid key %q at %d was served", bad, pos)
						}
						continue
					}
					want, _ := p.GetDataPage(src[i*cfg.PageSize])
					got, _ := p.GetDataPage(dst[i*cfg.PageSize])
					if !ok[i] || !bytes.Equal(want, got) {
						t.Errorf("key %d (invalid key at %d): ok %v, own page %v", i, pos, ok[i], bytes.Equal(want, got))
					}
				}
			}
		})
	}
	if st := s.Stats(); st.Corrupt != 0 || st.Mismatch != 0 {
		t.Errorf("stats %+v: an invalid key is a miss, not a bad copy", st)
	}
}
