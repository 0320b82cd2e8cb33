package hicachefile

import (
	"testing"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

// TestDigestCollisionNeverServesOtherKey: with the index forged so that key b's
// digest also names key a's entry (what a digest collision does), no read
// serves a's page for b, a stays served, and b's own copy is found.
func TestDigestCollisionNeverServesOtherKey(t *testing.T) {
	ps := mhaCfg.PageSize
	for _, bStored := range []bool{false, true} {
		p, idx := randomPages(t, 4)
		s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
		if bStored {
			if ok, err := s.BatchSetV1([]string{"b"}, idx[ps:2*ps]); err != nil || !ok[0] {
				t.Fatal(ok, err)
			}
		}
		if ok, err := s.BatchSetV1([]string{"a"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		// Forge: a's file holds a second entry, under b's digest, pointing
		// at a's page and index entry.
		ha, hb := s.idx.Hash("a"), s.idx.Hash("b")
		refs := make([]index.Ref, 1)
		s.idx.Lookup([]uint64{ha}, s.pool.Load().fp, refs, nil)
		name, meta, ok := s.idx.File(refs[0].File)
		if !ok {
			t.Fatal("a not indexed")
		}
		s.idx.AddHashed(name, meta, []uint64{hb, ha}, []uint32{refs[0].Ent, refs[0].Ent}, []uint32{refs[0].Page, refs[0].Page})
		dst, _ := p.Alloc(2 * ps)
		got, err := s.BatchGetV1([]string{"b", "a"}, dst)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != bStored || (bStored && !samePages(t, p, dst[0], idx[ps])) {
			t.Errorf("b stored=%v: BatchGetV1(b) = %v over a forged collision", bStored, got[0])
		}
		if !got[1] || !samePages(t, p, dst[ps], idx[0]) {
			t.Errorf("b stored=%v: BatchGetV1(a) = %v after a forged collision", bStored, got[1])
		}
	}
}
