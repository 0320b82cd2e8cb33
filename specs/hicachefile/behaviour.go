package hicachefile

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

var _ = Describe("Other behaviour", Ordered, func() {
	var p *hostcache.Pool
	BeforeAll(func() {
		p = mustPool(specShape.Of(hostcache.MHA, hostcache.LayerFirst, hostcache.Float16))
	})
	newStore := func() (*hicachefile.Store, hicachefile.Config) {
		GinkgoHelper()
		cfg := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "model"}
		return mustStore(cfg, p), cfg
	}
	// setV1 stores len(keys) random pages under keys through s's V1 interface.
	setV1 := func(s *hicachefile.Store, keys ...string) []int64 {
		GinkgoHelper()
		from := mustAlloc(p, len(keys))
		fillRandom(p, from)
		ok, err := s.BatchSetV1(keys, from)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(Equal(trues(len(keys))))
		return from
	}
	// setOld stores a random page under key through s's old interface.
	setOld := func(s *hicachefile.Store, key string) {
		GinkgoHelper()
		from := mustAlloc(p, 1)
		fillRandom(p, from)
		Expect(s.Set(key, dataPages(p, from)[0])).To(Succeed())
	}

	Describe("BatchExists", func() {
		It("returns the longest prefix that exists in either format; a hole ends it", func() {
			s, _ := newStore()
			keys := keysN("ex", 6)
			setV1(s, keys[0], keys[1])
			setOld(s, keys[2])
			setV1(s, keys[4], keys[5])

			Expect(s.BatchExists(keys)).To(Equal(3))
			Expect(s.BatchExists(keys[:3])).To(Equal(3))
			Expect(s.BatchExists(keys[2:])).To(Equal(1))
			Expect(s.BatchExists(keys[3:])).To(BeZero())
			Expect(s.BatchExists(keys[4:])).To(Equal(2))
			Expect(s.BatchExists(nil)).To(BeZero())
			Expect(s.Exists(keys[2])).To(BeTrue())
			Expect(s.Exists(keys[3])).To(BeFalse())
			Expect(s.Exists(keys[5])).To(BeTrue())
			// An invalid key ends the prefix too.
			Expect(s.BatchExists([]string{keys[0], "a/b", keys[1]})).To(Equal(1))
		})
	})

	Describe("Clear", func() {
		It("removes this store's files and spares other stores' files in the same directory", func() {
			dir := GinkgoT().TempDir()
			ours := hicachefile.Config{Dir: dir, ModelName: "model", TPRank: 1, TPSize: 12, PPRank: 0, PPSize: 2}
			others := []hicachefile.Config{
				{Dir: dir, ModelName: "a_model", TPRank: 1, TPSize: 12, PPRank: 0, PPSize: 2},
				{Dir: dir, ModelName: "model", TPRank: 11, TPSize: 12, PPRank: 0, PPSize: 2},
				{Dir: dir, ModelName: "model", TPRank: 1, TPSize: 12, PPRank: 1, PPSize: 2},
				{Dir: dir, ModelName: "model", PPRank: 0, PPSize: 2, IsMLA: true},
			}
			v1Keys := []string{"aa00", "aa01"}
			s := mustStore(ours, p)
			setV1(s, v1Keys...)
			setOld(s, "bb00")
			setOld(s, "k_x") // a key with '_': Clear forgets it too
			var stores []*hicachefile.Store
			for _, cfg := range others {
				o := mustStore(cfg, p)
				setV1(o, v1Keys...)
				setOld(o, "bb00")
				stores = append(stores, o)
			}
			// Temp files left by crashed writers: ours and a look-alike.
			tmp := func(cfg hicachefile.Config) string { return sgname.TmpName(cfg, "0123456789abcdef") }
			for _, d := range []string{dir, sgname.V1Dir(ours)} {
				Expect(os.WriteFile(filepath.Join(d, tmp(ours)), nil, 0o644)).To(Succeed())
				Expect(os.WriteFile(filepath.Join(d, tmp(others[0])), nil, 0o644)).To(Succeed())
			}

			before := map[string][]string{}
			for _, d := range append([]string{dir, sgname.V1Dir(ours)}, v1DirsOf(others)...) {
				before[d] = listDir(d)
			}
			Expect(before[sgname.V1Dir(ours)]).To(HaveLen(3)) // a batch file and two temp files

			Expect(s.Clear()).To(Succeed())

			// others[0] ("a_model") loses its old-format file: its name is
			// also key "bb00_a" of ours, and SGLang's naming cannot tell
			// them apart. A neighbour's miss, never a stale page of ours.
			Expect(listDir(dir)).To(ConsistOf(without(before[dir], "bb00"+sgname.Suffix(ours)+".bin", "k_x"+sgname.Suffix(ours)+".bin",
				"bb00"+sgname.Suffix(others[0])+".bin", tmp(ours))))
			Expect(listDir(sgname.V1Dir(ours))).To(ConsistOf(tmp(others[0])))
			for _, d := range v1DirsOf(others) {
				Expect(listDir(d)).To(Equal(before[d]), d)
			}

			Expect(s.BatchExists(append(v1Keys, "bb00"))).To(BeZero())
			Expect(s.Exists("k_x")).To(BeFalse())
			for i, o := range stores {
				want := 3
				if i == 0 {
					want = 2 // its "bb00" went with ours
				}
				Expect(o.BatchExists(append(v1Keys, "bb00"))).To(Equal(want), "store %d", i)
				ok, err := o.BatchGetV1(v1Keys, mustAlloc(p, 2))
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal(trues(2)))
			}

			// The cleared store works on.
			setV1(s, v1Keys...)
			Expect(s.BatchExists(v1Keys)).To(Equal(2))
		})
	})

	Describe("invalid keys", func() {
		// The store's suffix is "_model_0_1": 10 bytes, so a key may have
		// 255-10-4 bytes.
		longest := strings.Repeat("k", 241)
		invalid := []string{"", "/", "a/b", "a\x00b", ".", "..", longest + "k"}

		It("accepts the longest key whose file name fits in 255 bytes", func() {
			s, _ := newStore()
			setOld(s, longest)
			Expect(filepath.Base(s.FilePath(longest))).To(HaveLen(255))
			setV1(s, "v"+longest[1:])
		})

		It("are ErrInvalidKey for Set and Get", func() {
			s, _ := newStore()
			page := p.GetDummyFlatDataPage()
			for _, k := range invalid {
				Expect(s.Set(k, page)).To(MatchError(hicachefile.ErrInvalidKey), "Set(%q)", k)
				Expect(s.Get(k, page)).To(MatchError(hicachefile.ErrInvalidKey), "Get(%q)", k)
				Expect(s.Exists(k)).To(BeFalse())
				_, found := s.Locate(k)
				Expect(found).To(BeFalse())
			}
			entries, err := os.ReadDir(s.Dir())
			Expect(err).NotTo(HaveOccurred())
			Expect(entries).To(HaveLen(1)) // the V1 directory
		})

		It("are false entries in BatchSetV1 and BatchGetV1 while valid neighbours succeed", func() {
			s, _ := newStore()
			for _, k := range invalid {
				keys := []string{"good0", k, "good1"}
				from := mustAlloc(p, 3)
				fillRandom(p, from)
				ok, err := s.BatchSetV1(keys, from)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal([]bool{true, false, true}), "key %q", k)
				to := mustAlloc(p, 3)
				ok, err = s.BatchGetV1(keys, to)
				Expect(err).NotTo(HaveOccurred())
				Expect(ok).To(Equal([]bool{true, false, true}), "key %q", k)
				Expect(s.BatchExists(keys)).To(Equal(1))
			}
			Expect(batchFiles(sgname.V1Dir(hicachefile.Config{Dir: s.Dir(), ModelName: "model"}))).To(HaveLen(1)) // the first call's; later ones found good0 and good1
		})

		It("stop BatchSet, and are false in BatchGet", func() {
			s, _ := newStore()
			page := dataPages(p, mustAlloc(p, 1))[0]
			ok, err := s.BatchSet([]string{"good0", "a/b", "good1"}, [][]byte{page, page, page})
			Expect(err).To(MatchError(hicachefile.ErrInvalidKey))
			Expect(ok).To(Equal([]bool{true, false, false}))
			Expect(s.Exists("good1")).To(BeFalse())
			Expect(s.Set("good1", page)).To(Succeed())
			dsts := [][]byte{p.GetDummyFlatDataPage(), p.GetDummyFlatDataPage(), p.GetDummyFlatDataPage()}
			ok, err = s.BatchGet([]string{"good0", "..", "good1"}, dsts)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal([]bool{true, false, true}))
		})
	})

	Describe("call-level errors", func() {
		It("are ErrLength with every entry false when hostIndices are not PageSize per key", func() {
			s, cfg := newStore()
			keys := keysN("len", 3)
			for _, idx := range [][]int64{mustAlloc(p, 2), append(mustAlloc(p, 3), 0), nil} {
				ok, err := s.BatchSetV1(keys, idx)
				Expect(err).To(MatchError(hicachefile.ErrLength))
				Expect(ok).To(Equal(make([]bool, 3)))
				ok, err = s.BatchGetV1(keys, idx)
				Expect(err).To(MatchError(hicachefile.ErrLength))
				Expect(ok).To(Equal(make([]bool, 3)))
			}
			Expect(batchFiles(sgname.V1Dir(cfg))).To(BeEmpty())
		})

		It("are ErrLength when keys and values or destinations differ in number", func() {
			s, _ := newStore()
			page := p.GetDummyFlatDataPage()
			ok, err := s.BatchSet([]string{"a", "b"}, [][]byte{page})
			Expect(err).To(MatchError(hicachefile.ErrLength))
			Expect(ok).To(Equal([]bool{false, false}))
			ok, err = s.BatchGet([]string{"a", "b"}, [][]byte{page, page, page})
			Expect(err).To(MatchError(hicachefile.ErrLength))
			Expect(ok).To(Equal([]bool{false, false}))
			Expect(s.BatchExists([]string{"a", "b"})).To(BeZero())
		})

		It("are the pool's error with every entry false for indices the pool rejects", func() {
			s, _ := newStore()
			outside := []int64{poolPages * pageSize, poolPages*pageSize + 1, poolPages*pageSize + 2, poolPages*pageSize + 3}
			misaligned := []int64{1, 2, 3, 4}
			for _, c := range []struct {
				idx  []int64
				want error
			}{{outside, hostcache.ErrOutOfRange}, {misaligned, hostcache.ErrBadIndices}} {
				ok, err := s.BatchSetV1([]string{"x"}, c.idx)
				Expect(err).To(MatchError(c.want))
				Expect(ok).To(Equal([]bool{false}))
				ok, err = s.BatchGetV1([]string{"x"}, c.idx)
				Expect(err).To(MatchError(c.want))
				Expect(ok).To(Equal([]bool{false}))
			}
		})

		It("are ErrNoPool for V1 calls before a pool is registered", func() {
			cfg := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "model"}
			s := mustStore(cfg, nil)
			idx := mustAlloc(p, 1)
			ok, err := s.BatchSetV1([]string{"x"}, idx)
			Expect(err).To(MatchError(hicachefile.ErrNoPool))
			Expect(ok).To(Equal([]bool{false}))
			ok, err = s.BatchGetV1([]string{"x"}, idx)
			Expect(err).To(MatchError(hicachefile.ErrNoPool))
			Expect(ok).To(Equal([]bool{false}))
			Expect(s.RegisterMemPoolHost(nil)).To(MatchError(hicachefile.ErrNoPool))
			// The old interface needs no pool.
			Expect(s.Set("x", p.GetDummyFlatDataPage())).To(Succeed())
		})

		It("are ErrClosed after Close", func() {
			s, _ := newStore()
			setV1(s, "v1key")
			setOld(s, "oldkey")
			Expect(s.Close()).To(Succeed())

			page := p.GetDummyFlatDataPage()
			idx := mustAlloc(p, 1)
			Expect(s.Set("k", page)).To(MatchError(hicachefile.ErrClosed))
			Expect(s.Get("oldkey", page)).To(MatchError(hicachefile.ErrClosed))
			ok, err := s.BatchSet([]string{"k"}, [][]byte{page})
			Expect(err).To(MatchError(hicachefile.ErrClosed))
			Expect(ok).To(Equal([]bool{false}))
			ok, err = s.BatchGet([]string{"oldkey"}, [][]byte{page})
			Expect(err).To(MatchError(hicachefile.ErrClosed))
			Expect(ok).To(Equal([]bool{false}))
			ok, err = s.BatchSetV1([]string{"k"}, idx)
			Expect(err).To(MatchError(hicachefile.ErrClosed))
			Expect(ok).To(Equal([]bool{false}))
			ok, err = s.BatchGetV1([]string{"v1key"}, idx)
			Expect(err).To(MatchError(hicachefile.ErrClosed))
			Expect(ok).To(Equal([]bool{false}))
			Expect(s.Clear()).To(MatchError(hicachefile.ErrClosed))
			Expect(s.Close()).To(MatchError(hicachefile.ErrClosed))
			Expect(s.Exists("v1key")).To(BeFalse())
			Expect(s.BatchExists([]string{"v1key", "oldkey"})).To(BeZero())
			_, found := s.Locate("v1key")
			Expect(found).To(BeFalse())
		})
	})

	Describe("duplicates", func() {
		It("BatchSetV1 reports an existing key true and writes no new file", func() {
			s, cfg := newStore()
			keys := keysN("dup", 3)
			from := setV1(s, keys...)
			want := dataPages(p, from)
			files := batchFiles(sgname.V1Dir(cfg))
			Expect(files).To(HaveLen(1))

			other := mustAlloc(p, 3)
			fillRandom(p, other)
			ok, err := s.BatchSetV1(keys, other)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(3)))
			Expect(batchFiles(sgname.V1Dir(cfg))).To(Equal(files))
			st := s.Stats()
			Expect(st.Sets).To(BeEquivalentTo(3))
			Expect(st.Existed).To(BeEquivalentTo(3))

			to := mustAlloc(p, 3)
			ok, err = s.BatchGetV1(keys, to)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(3)))
			Expect(dataPages(p, to)).To(Equal(want))
		})

		It("BatchSetV1 writes a key held only in the old format again as V1", func() {
			s, cfg := newStore()
			setOld(s, "old")
			ok, err := s.BatchSetV1([]string{"old"}, mustAlloc(p, 1))
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal([]bool{true}))
			Expect(batchFiles(sgname.V1Dir(cfg))).To(HaveLen(1))
			Expect(s.Stats().Existed).To(BeZero())
			_, found := s.Locate("old")
			Expect(found).To(BeTrue())
		})

		It("Set skips a key whose file exists, as SGLang does", func() {
			s, _ := newStore()
			first := dataPages(p, mustAlloc(p, 1))[0]
			first[0] = 1
			Expect(s.Set("k", first)).To(Succeed())
			second := slices.Clone(first)
			second[0] = 2
			Expect(s.Set("k", second)).To(Succeed())
			Expect(os.ReadFile(s.FilePath("k"))).To(Equal(first))
			Expect(s.Stats().Existed).To(BeEquivalentTo(1))
		})

		It("BatchSetV1 stores a key repeated within one call once", func() {
			s, cfg := newStore()
			from := mustAlloc(p, 3)
			fillRandom(p, from)
			want := dataPages(p, from)
			keys := []string{"d0", "d1", "d0"}
			ok, err := s.BatchSetV1(keys, from)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(3)))
			files := batchFiles(sgname.V1Dir(cfg))
			Expect(files).To(HaveLen(1))
			Expect(fileSize(files[0])).To(Equal(2*int64(p.PageBytes()) + hicachefile.IndexSize([]string{"d0", "d1"}) + hicachefile.IdentitySize(cfg.ModelName) + hicachefile.TrailerSize))
			Expect(s.Stats().Sets).To(BeEquivalentTo(2))

			to := mustAlloc(p, 2)
			ok, err = s.BatchGetV1(keys[:2], to)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(2)))
			Expect(dataPages(p, to)).To(Equal(want[:2]))
		})
	})
})

// listDir returns the names in dir, sorted.
func listDir(dir string) []string {
	GinkgoHelper()
	entries, err := os.ReadDir(dir)
	Expect(err).NotTo(HaveOccurred())
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}

// without returns names less the ones listed in drop, each of which must
// be in names.
func without(names []string, drop ...string) []string {
	GinkgoHelper()
	out := slices.Clone(names)
	for _, d := range drop {
		i := slices.Index(out, d)
		Expect(i).To(BeNumerically(">=", 0), "%q in %v", d, names)
		out = slices.Delete(out, i, i+1)
	}
	return out
}

// v1DirsOf returns the V1 directory of each config.
func v1DirsOf(cfgs []hicachefile.Config) []string {
	var dirs []string
	for _, c := range cfgs {
		dirs = append(dirs, sgname.V1Dir(c))
	}
	return dirs
}
