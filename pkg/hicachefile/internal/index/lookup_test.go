package index

import (
	"fmt"
	"slices"
	"testing"
)

// TestLookupBatchSizes: a lookup of many keys at once (every shard locked,
// keys in their own order) finds exactly what lookups of one key each
// find (shard by shard): the copy of the file whose FP is asked for when
// there is one, another copy when not, none for keys never added or whose
// file was forgotten, with skip and LookupMeta's metadata honoured, for
// batches on both sides of lockAllMin and in tables large enough for the
// touch pass.
func TestLookupBatchSizes(t *testing.T) {
	x := New()
	// "a" (FP 1) holds k0..k19999 (over touchMin slots a shard); "b" (FP
	// 2) holds the even ones again; "c" holds k20000..k20099 and is
	// forgotten.
	x.Add("a", Meta{FP: 1, IndexOff: 1}, entries("k", 20000), nil)
	even := make([]Entry, 0, 10000)
	for i := 0; i < 20000; i += 2 {
		even = append(even, Entry{Key: fmt.Sprint("k", i), Ent: uint32(7 * i), Page: uint32(i / 2)})
	}
	x.Add("b", Meta{FP: 2, IndexOff: 2}, even, nil)
	gone := make([]Entry, 100)
	for i := range gone {
		gone[i] = Entry{Key: fmt.Sprint("k", 20000+i)}
	}
	x.Add("c", Meta{FP: 1}, gone, nil)
	x.Forget("c")
	for _, n := range []int{1, lockAllMin - 1, lockAllMin, 200, 3200} {
		hashes := make([]uint64, n)
		for i := range hashes {
			hashes[i] = x.Hash(fmt.Sprint("k", (i*7919)%20200)) // scattered, some never added
		}
		for _, fp := range []uint64{1, 2, 3} {
			for _, skipB := range []bool{false, true} {
				var skip func(int, Ref) bool
				if skipB {
					bID := uint32(0)
					for id := range x.files {
						if x.files[id].live && x.files[id].name == "b" {
							bID = uint32(id)
						}
					}
					skip = func(_ int, r Ref) bool { return r.File == bID }
				}
				refs := make([]Ref, n)
				found := x.Lookup(hashes, fp, refs, skip)
				want := make([]Ref, n)
				wantFound := 0
				for i, h := range hashes {
					one := make([]Ref, 1)
					wantFound += x.Lookup([]uint64{h}, fp, one, func(_ int, r Ref) bool { return skip != nil && skip(i, r) })
					want[i] = one[0]
				}
				if found != wantFound || !slices.Equal(refs, want) {
					t.Fatalf("n=%d fp=%d skip=%v: batch found %d, one by one %d; refs differ: %v", n, fp, skipB, found, wantFound, !slices.Equal(refs, want))
				}
				if skip == nil {
					metas := make([]Meta, n)
					refs2 := make([]Ref, n)
					if x.LookupMeta(hashes, fp, refs2, metas) != found || !slices.Equal(refs2, refs) {
						t.Fatalf("n=%d fp=%d: LookupMeta differs from Lookup", n, fp)
					}
					for i, r := range refs2 {
						var m Meta
						if r.File != 0 {
							_, m, _ = x.File(r.File)
						}
						if metas[i] != m {
							t.Fatalf("n=%d fp=%d: key %d meta %+v, file has %+v", n, fp, i, metas[i], m)
						}
					}
				}
			}
		}
	}
}
