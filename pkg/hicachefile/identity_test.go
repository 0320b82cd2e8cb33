package hicachefile

import (
	"hash/fnv"
	"testing"
)

// TestFNV64a checks fnv64a against hash/fnv, and that identities that
// differ in any field a store compares get different keys.
func TestFNV64a(t *testing.T) {
	for _, in := range []string{"", "a", "hicache identity"} {
		h := fnv.New64a()
		h.Write([]byte(in))
		if got, want := fnv64a([]byte(in)), h.Sum64(); got != want {
			t.Fatalf("fnv64a(%q) = %x, want %x", in, got, want)
		}
	}
	base := identity{model: "m", tpRank: 1, tpSize: 2, ppRank: 0, ppSize: 1}
	for _, other := range []identity{
		{model: "n", tpRank: 1, tpSize: 2, ppSize: 1},
		{model: "m", tpRank: 0, tpSize: 2, ppSize: 1},
		{model: "m", tpRank: 1, tpSize: 4, ppSize: 1},
		{model: "m", tpRank: 1, tpSize: 2, ppRank: 1, ppSize: 2},
		{model: "m", tpRank: 1, tpSize: 2, ppSize: 1, mla: true},
	} {
		if other.key() == base.key() {
			t.Fatalf("%+v and %+v share a key", other, base)
		}
	}
	mla := identity{model: "m", tpRank: 1, tpSize: 2, ppSize: 1, mla: true}
	if other := (identity{model: "m", tpRank: 0, tpSize: 4, ppSize: 1, mla: true}); other.key() != mla.key() {
		t.Fatal("MLA identities that differ only in TP rank and size get different keys")
	}
}
