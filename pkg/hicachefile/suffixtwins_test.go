//go:build linux

package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestSuffixTwinsKeepTheirBatchFiles: of two identities whose suffixes
// coincide, one store's eviction, byte count and Clear never touch the
// other's batch files or temp files.
func TestSuffixTwinsKeepTheirBatchFiles(t *testing.T) {
	for _, tw := range suffixTwins {
		t.Run(tw.name, func(t *testing.T) {
			ps := mhaCfg.PageSize
			p, idx := randomPages(t, 6)
			dir := t.TempDir()
			file := oneKeyFile(p.PageBytes()) - IdentitySize("m")
			a, b := tw.a, tw.b
			a.Dir, b.Dir = dir, dir
			a.MaxBatchFileBytes, b.MaxBatchFileBytes = int64(p.PageBytes()), int64(p.PageBytes())
			a.MaxBytes, a.EvictionRatio = 2*(file+IdentitySize(a.ModelName))+1, 1
			if a.withDefaults().suffix() != b.withDefaults().suffix() {
				t.Fatalf("suffixes %q and %q differ", a.withDefaults().suffix(), b.withDefaults().suffix())
			}
			sb := newStore(t, b, p)
			bKeys := []string{"b0", "b1", "b2"}
			for i, k := range bKeys {
				if ok, err := sb.BatchSetV1([]string{k}, idx[i*ps:(i+1)*ps]); err != nil || !ok[0] {
					t.Fatal(ok, err)
				}
			}
			// A live temp file of b's in its V1 directory and in Dir.
			bTmp := []string{filepath.Join(sb.v1Dir, sb.lockedTmpName()), filepath.Join(dir, sb.lockedTmpName())}
			for _, path := range bTmp {
				writeTempFile(t, path, int(10*file), 0, true)
			}
			sa := newStore(t, a, p)
			if sa.v1Dir == sb.v1Dir {
				t.Errorf("both stores use %s", sa.v1Dir)
			}
			if n := lruBytes(sa); n != 0 {
				t.Errorf("a counts %d bytes before writing anything", n)
			}
			for i := range 3 {
				if ok, err := sa.BatchSetV1([]string{fmt.Sprint("a", i)}, idx[(3+i)*ps:(4+i)*ps]); err != nil || !ok[0] {
					t.Fatal(ok, err)
				}
			}
			_ = sa.reclaimTemps() // b's live temp files must not count
			if n := lruBytes(sa); n > a.MaxBytes {
				t.Errorf("a counts %d bytes, over its MaxBytes %d", n, a.MaxBytes)
			}
			if st := sa.Stats(); st.Evicted != 1 {
				t.Errorf("a evicted %d files, want its own 1", st.Evicted)
			}
			if err := sa.Clear(); err != nil {
				t.Fatal(err)
			}
			if n := sa.BatchExists([]string{"a1", "a2"}); n != 0 {
				t.Errorf("a's pages exist after its Clear: %d", n)
			}
			ok, err := sb.BatchGetV1(bKeys, idx[:3*ps])
			if err != nil || !all(ok) {
				t.Errorf("b's pages after a's eviction and Clear: %v, %v", ok, err)
			}
			if n := batchFileCount(t, sb); n != 3 {
				t.Errorf("b has %d batch files, want 3", n)
			}
			for _, path := range bTmp {
				if _, err := os.Stat(path); err != nil {
					t.Errorf("b's live temp file: %v", err)
				}
			}
		})
	}
}

// TestSuffixTwinsHaveDistinctNames: every two identities whose suffixes
// coincide have different V1 directories and temp names, and a store
// takes no temp name of the other as its own.
func TestSuffixTwinsHaveDistinctNames(t *testing.T) {
	for _, tw := range suffixTwins {
		a, b := storeOf(t, tw.a), storeOf(t, tw.b)
		if a.suffix != b.suffix {
			t.Errorf("%s: suffixes %q and %q differ", tw.name, a.suffix, b.suffix)
		}
		if a.v1DirName() == b.v1DirName() {
			t.Errorf("%s: both use %s", tw.name, a.v1DirName())
		}
		for _, n := range []string{b.tmpName(), b.lockedTmpName()} {
			if a.isTmpName(n) || !b.isTmpName(n) {
				t.Errorf("%s: temp name %q of b: a's %v, b's %v", tw.name, n, a.isTmpName(n), b.isTmpName(n))
			}
		}
	}
}

// twins reports whether two identities (defaults filled in) share an
// SGLang suffix, by the rule doc.go states: model names that differ only
// where one has '/' and the other '-', or an MLA identity whose model name
// is the other's followed by the numbers that the other's suffix has and
// its own lacks.
func twins(a, b Config) bool {
	nums := func(c Config) string {
		s := ""
		if !c.IsMLA {
			s = fmt.Sprintf("_%d_%d", c.TPRank, c.TPSize)
		}
		if c.PPSize > 1 {
			s += fmt.Sprintf("_%d_%d", c.PPSize, c.PPRank)
		}
		if c.CPSize > 1 {
			s += fmt.Sprintf("_cp%d_%d", c.CPRank, c.CPSize)
		}
		return s
	}
	dash := func(m string) string { return strings.ReplaceAll(m, "/", "-") }
	if nums(a) == nums(b) && dash(a.ModelName) == dash(b.ModelName) {
		return true
	}
	for _, c := range [][2]Config{{a, b}, {b, a}} {
		long, mla := c[0], c[1]
		lacks, ok := strings.CutSuffix(nums(long), nums(mla))
		if mla.IsMLA && ok && lacks != "" && dash(mla.ModelName) == dash(long.ModelName)+lacks {
			return true
		}
	}
	return false
}

// TestSuffixTwinsRule enumerates small identities: two share a suffix
// exactly when the rule in doc.go (twins) says so, and never share a V1
// directory name or the digest in their temp names.
func TestSuffixTwinsRule(t *testing.T) {
	var cfgs []Config
	for _, base := range []string{"m", "o/m", "o-m"} {
		for _, ext := range []string{"", "_0_1", "_0_2", "_1_2", "_2_0", "_2_1", "_0_1_2_0", "_1_2_2_1", "_x",
			"_cp0_2", "_0_1_cp0_2", "_2_0_cp0_2", "_0_1_2_0_cp0_2"} {
			for _, tp := range [][2]int{{0, 1}, {0, 2}, {1, 2}} {
				for _, pp := range [][2]int{{0, 1}, {0, 2}, {1, 2}} {
					for _, cp := range [][2]int{{0, 1}, {0, 2}} {
						for _, mla := range []bool{false, true} {
							c := Config{ModelName: base + ext, TPRank: tp[0], TPSize: tp[1], PPRank: pp[0], PPSize: pp[1],
								CPRank: cp[0], CPSize: cp[1], IsMLA: mla}
							if mla && tp != [2]int{0, 1} {
								continue // MLA identities ignore TP: one per TP
							}
							cfgs = append(cfgs, c.withDefaults())
						}
					}
				}
			}
		}
	}
	suffixes, digests := make([]string, len(cfgs)), map[string]int{}
	for i, c := range cfgs {
		suffixes[i] = c.suffix()
		if j, ok := digests[c.identityDigest()]; ok {
			t.Errorf("%+v and %+v share digest %s", cfgs[j], c, c.identityDigest())
		}
		digests[c.identityDigest()] = i
	}
	pairs := 0
	for i, a := range cfgs {
		for j, b := range cfgs[i+1:] {
			same := suffixes[i] == suffixes[i+1+j]
			if same != twins(a, b) {
				t.Errorf("%+v and %+v: suffixes %q, %q; rule says twins %v", a, b, a.suffix(), b.suffix(), twins(a, b))
			}
			if same {
				pairs++
			}
		}
	}
	if pairs == 0 {
		t.Fatal("no twins enumerated")
	}
}

// identityFields are the Config fields that tell one identity's pages from
// another's; notIdentity are the others. A field in neither fails
// TestIdentityDigestCoversEveryField: decide where it belongs.
var (
	identityFields = []string{"ModelName", "TPRank", "TPSize", "PPRank", "PPSize", "CPRank", "CPSize", "IsMLA", "component"}
	notIdentity    = []string{"NoEnv", "Dir", "MaxBatchFileBytes", "Sync", "IOWorkers", "MaxBytes", "MinFreeBytes",
		"DirectIO", "NoWatch", "PollInterval", "Syscalls", "EvictionRatio", "StorageOwner"}
)

// TestIdentityDigestCoversEveryField: changing any identity field changes
// the digest (TP rank and size but under MLA, whose KV is the same on every
// TP rank), and every Config field is classified.
func TestIdentityDigestCoversEveryField(t *testing.T) {
	known := map[string]bool{}
	for _, f := range append(append([]string{}, identityFields...), notIdentity...) {
		known[f] = true
	}
	ct := reflect.TypeOf(Config{})
	for i := range ct.NumField() {
		if f := ct.Field(i); !known[f.Name] {
			t.Errorf("Config.%s is neither an identity field nor listed as none: add it to identityDigest or to notIdentity", f.Name)
		}
	}
	base := Config{ModelName: "m", TPRank: 1, TPSize: 3, PPRank: 1, PPSize: 3, CPRank: 1, CPSize: 3, component: "swa"}
	d0 := base.withDefaults().identityDigest()
	for _, name := range identityFields {
		c := base
		// Through unsafe-free reflection only exported fields can be set:
		// component is set by name.
		if name == "component" {
			c.component += "x"
		} else {
			v := reflect.ValueOf(&c).Elem().FieldByName(name)
			switch v.Kind() {
			case reflect.String:
				v.SetString(v.String() + "x")
			case reflect.Int:
				v.SetInt(v.Int() + 1)
			case reflect.Bool:
				v.SetBool(!v.Bool())
			default:
				t.Fatalf("Config.%s: kind %s", name, v.Kind())
			}
		}
		if c.withDefaults().identityDigest() == d0 {
			t.Errorf("changing Config.%s leaves the digest", name)
		}
	}
	mla := Config{ModelName: "m", IsMLA: true}
	if (Config{ModelName: "m", IsMLA: true, TPRank: 1, TPSize: 2}).withDefaults().identityDigest() != mla.withDefaults().identityDigest() {
		t.Error("an MLA identity's digest depends on its TP rank")
	}
	if got := len(d0); got != digestHex || !isToken(d0) {
		t.Errorf("digest %q", d0)
	}
}
