//go:build linux

package hicachefile

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// flatAxes returns the axes of a flat data page of cfg's kind and layout,
// outermost first, with their lengths: "kv" (MHA's K and V halves),
// "layer", "tok" (the page's token slots), "head" and "dim" (MLA: one head
// of R elements).
func flatAxes(cfg hostcache.Config) (names []string, lens map[string]int) {
	lens = map[string]int{"kv": 2, "layer": cfg.LayerNum, "tok": cfg.PageSize, "head": cfg.HeadNum, "dim": cfg.HeadDim}
	if cfg.Kind == hostcache.MLA {
		lens["kv"], lens["head"], lens["dim"] = 1, 1, cfg.KVLoraRank+cfg.QKRopeHeadDim
	}
	switch cfg.Layout {
	case hostcache.LayerFirst, hostcache.PageFirstDirect:
		names = []string{"kv", "layer", "tok", "head", "dim"}
	case hostcache.PageFirst:
		names = []string{"kv", "tok", "layer", "head", "dim"}
	case hostcache.PageHead:
		names = []string{"kv", "head", "tok", "layer", "dim"}
	}
	return names, lens
}

// logicalIDs returns, for each element of a flat data page of cfg, the
// number of the (kv, layer, token, head, dim) it holds, counted in that
// order.
func logicalIDs(cfg hostcache.Config) []uint16 {
	names, lens := flatAxes(cfg)
	canon := []string{"kv", "layer", "tok", "head", "dim"}
	n := 1
	for _, a := range canon {
		n *= lens[a]
	}
	ids := make([]uint16, n)
	for i := range ids {
		coord := map[string]int{}
		r := i
		for j := len(names) - 1; j >= 0; j-- {
			coord[names[j]] = r % lens[names[j]]
			r /= lens[names[j]]
		}
		id := 0
		for _, a := range canon {
			id = id*lens[a] + coord[a]
		}
		ids[i] = uint16(id)
	}
	return ids
}

// sameFlatOrder is the rule doc.go states: two layouts' flat data pages
// hold the elements in the same order when their axes, leaving out those
// of length 1, come in the same order.
func sameFlatOrder(a, b hostcache.Config) bool {
	long := func(cfg hostcache.Config) []string {
		names, lens := flatAxes(cfg)
		return slices.DeleteFunc(names, func(n string) bool { return lens[n] == 1 })
	}
	return slices.Equal(long(a), long(b))
}

// misplaced counts the elements of a page written as an old-format file
// from a pool of layout a that a pool of layout b holds at another (kv,
// layer, token, head, dim) after reading it: through the copy interface
// (Get, then SetFromFlatDataPage), and, with s, through BatchGetV1's
// fallback to the .bin file.
func misplaced(t *testing.T, s *Store, a, b hostcache.Config, key string) (copied, zeroCopy int) {
	t.Helper()
	pa, pb := newPool(t, a), newPool(t, b)
	ia, err := pa.Alloc(a.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := pb.Alloc(b.PageSize)
	if err != nil {
		t.Fatal(err)
	}
	ids := logicalIDs(a)
	page := make([]byte, 2*len(ids))
	for i, id := range ids {
		binary.LittleEndian.PutUint16(page[2*i:], id)
	}
	if err := pa.SetFromFlatDataPage(ia[0], page); err != nil {
		t.Fatal(err)
	}
	flat, err := pa.GetDataPage(ia[0])
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		got, err := pb.GetDataPage(ib[0])
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for i, id := range logicalIDs(b) {
			if binary.LittleEndian.Uint16(got[2*i:]) != id {
				n++
			}
		}
		return n
	}
	if err := pb.SetFromFlatDataPage(ib[0], flat); err != nil {
		t.Fatal(err)
	}
	copied = count()
	if s == nil {
		return copied, -1
	}
	if err := s.Set(key, flat); err != nil {
		t.Fatal(err)
	}
	if err := pb.SetFromFlatDataPage(ib[0], make([]byte, len(flat))); err != nil {
		t.Fatal(err)
	}
	if err := s.RegisterMemPoolHost(pb); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.BatchGetV1([]string{key}, ib); err != nil || !ok[0] {
		t.Fatalf("BatchGetV1 of the .bin page: %v, %v", ok, err)
	}
	return copied, count()
}

// TestOldPageAcrossLayouts: an old-format page written from a pool of one
// layout comes back in the right places in a pool of another layout exactly
// when their flat page orders agree (sameFlatOrder), whether read by copy
// or by BatchGetV1; otherwise most of its elements are misplaced.
func TestOldPageAcrossLayouts(t *testing.T) {
	mla := hostcache.Config{Kind: hostcache.MLA, DType: hostcache.Float16, PageSize: 4, Pages: 4, LayerNum: 3,
		KVLoraRank: 12, QKRopeHeadDim: 4}
	s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, nil)
	for _, base := range []hostcache.Config{mhaCfg, mla} {
		for i, la := range hostcache.Layouts {
			for j, lb := range hostcache.Layouts {
				a, b := base, base
				a.Layout, b.Layout = la, lb
				if a.Validate() != nil || b.Validate() != nil {
					continue // page_head is MHA's only
				}
				key := fmt.Sprintf("%s.%d.%d", base.Kind, i, j) // no '_': see Naming
				copied, zeroCopy := misplaced(t, s, a, b, key)
				n := len(logicalIDs(a))
				t.Logf("%s %s -> %s: %d of %d misplaced (copy), %d (BatchGetV1)", base.Kind, la, lb, copied, n, zeroCopy)
				if want := sameFlatOrder(a, b); (copied == 0) != want || (zeroCopy == 0) != want {
					t.Errorf("%s %s -> %s: %d and %d of %d misplaced; the rule says same order: %v", base.Kind, la, lb, copied, zeroCopy, n, want)
				}
			}
		}
	}
	// Shapes where axes of length 1 make more layouts agree.
	for _, shape := range []struct{ layers, ps, heads int }{{1, 4, 2}, {3, 1, 2}, {3, 4, 1}, {1, 4, 1}, {1, 1, 1}} {
		for _, la := range hostcache.Layouts {
			for _, lb := range hostcache.Layouts {
				a := mhaCfg
				a.LayerNum, a.PageSize, a.HeadNum = shape.layers, shape.ps, shape.heads
				b := a
				a.Layout, b.Layout = la, lb
				copied, _ := misplaced(t, nil, a, b, "")
				if want := sameFlatOrder(a, b); (copied == 0) != want {
					t.Errorf("L=%d ps=%d H=%d, %s -> %s: %d misplaced; the rule says same order: %v",
						shape.layers, shape.ps, shape.heads, la, lb, copied, want)
				}
			}
		}
	}
}
