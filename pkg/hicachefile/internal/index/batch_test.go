package index

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// addToBatch gathers name's entries into b, as a loader does.
func addToBatch(x *Index, b *Batch, name string, meta Meta, es []Entry) {
	for _, e := range es {
		b.Key(x.Hash(e.Key), e.Ent, e.Page)
	}
	b.EndFile(name, meta)
}

// TestAddBatchMatchesAdd: files added in one batch are found, named and
// counted as the same files added one at a time with Add.
func TestAddBatchMatchesAdd(t *testing.T) {
	one, many := New(), New()
	var b Batch
	want := 0
	for f := range 50 {
		want += f % 7
		name := fmt.Sprint("f", f)
		meta := Meta{FP: uint64(f % 3), IndexOff: int64(f), PageLen: 512}
		es := entries(name+"/", f%7) // some files have no key
		one.Add(name, meta, es, nil)
		addToBatch(many, &b, name, meta, es)
	}
	many.AddBatch(&b)
	if one.Len() != want || many.Len() != want {
		t.Fatalf("Len: Add %d, AddBatch %d, want %d", one.Len(), many.Len(), want)
	}
	for f := range 50 {
		name := fmt.Sprint("f", f)
		if !many.Has(name) {
			t.Fatalf("%s not known", name)
		}
		wantMeta, _ := one.MetaOf(name)
		if meta, ok := many.MetaOf(name); !ok || meta != wantMeta {
			t.Fatalf("%s: meta %+v, want %+v", name, meta, wantMeta)
		}
		for i, e := range entries(name+"/", f%7) {
			got, ent := lookup1(many, e.Key, uint64(f%3))
			if got != name || ent != uint32(100*i) {
				t.Fatalf("%s: found in %q at %d, want %s at %d", e.Key, got, ent, name, 100*i)
			}
		}
	}
}

// TestAddBatchReplaces: a file in a batch replaces a file of its name
// already in the index, and the last of two files of one name in a batch
// wins; Forget then removes every key.
func TestAddBatchReplaces(t *testing.T) {
	x := New()
	x.Add("f", Meta{FP: 1}, entries("old", 5), nil)
	var b Batch
	addToBatch(x, &b, "f", Meta{FP: 1}, entries("mid", 4))
	addToBatch(x, &b, "g", Meta{FP: 1}, entries("g", 2))
	addToBatch(x, &b, "f", Meta{FP: 1}, entries("new", 3))
	x.AddBatch(&b)
	if got := x.Len(); got != 5 {
		t.Fatalf("Len = %d, want 5 (3 of f, 2 of g)", got)
	}
	for _, k := range []string{"old0", "mid0"} {
		if name, _ := lookup1(x, k, 1); name != "" {
			t.Fatalf("%s of a replaced file found in %q", k, name)
		}
	}
	if name, _ := lookup1(x, "new2", 1); name != "f" {
		t.Fatalf("new2 in %q, want f", name)
	}
	x.Forget("f")
	x.Forget("g")
	if x.Len() != 0 {
		t.Fatalf("Len = %d after forgetting everything", x.Len())
	}
}

// TestBatchDiscardAndReuse: Discard drops only the keys of the file being
// gathered; keys after the last EndFile are not added; a Reset batch
// starts empty; forgotten file ids are reused.
func TestBatchDiscardAndReuse(t *testing.T) {
	x := New()
	var b Batch
	addToBatch(x, &b, "a", Meta{FP: 1}, entries("a", 3))
	b.Key(x.Hash("bad0"), 0, 0)
	b.Key(x.Hash("bad1"), 0, 0)
	b.Discard()
	addToBatch(x, &b, "b", Meta{FP: 1}, entries("b", 2))
	b.Key(x.Hash("dangling"), 0, 0) // no EndFile
	if b.Files() != 2 {
		t.Fatalf("Files = %d, want 2", b.Files())
	}
	x.AddBatch(&b)
	if got := x.Len(); got != 5 {
		t.Fatalf("Len = %d, want 5", got)
	}
	for _, k := range []string{"bad0", "dangling"} {
		if name, _ := lookup1(x, k, 1); name != "" {
			t.Fatalf("%s found in %q", k, name)
		}
	}
	x.Forget("a")
	b.Reset()
	if b.Files() != 0 {
		t.Fatal("Reset left files")
	}
	addToBatch(x, &b, "c", Meta{FP: 1}, entries("c", 1))
	x.AddBatch(&b)
	if x.Len() != 3 {
		t.Fatalf("Len = %d, want 3", x.Len())
	}
	refs := make([]Ref, 1)
	x.Lookup([]uint64{x.Hash("c0")}, 1, refs, nil)
	if name, _, _ := x.File(refs[0].File); name != "c" || refs[0].File != 1 {
		t.Fatalf("c0 in file %d (%q); want a's freed id 1", refs[0].File, name)
	}
}

// TestUnknownAndGrow: Unknown keeps, in order, the names the index does
// not know; Grow changes nothing that lookups see.
func TestUnknownAndGrow(t *testing.T) {
	x := New()
	x.Add("b", Meta{}, nil, nil)
	x.Add("d", Meta{}, entries("d", 3), nil)
	x.Grow(1000, 100000)
	if got := x.Unknown([]string{"a", "b", "c", "d", "e"}); !slices.Equal(got, []string{"a", "c", "e"}) {
		t.Fatalf("Unknown = %v", got)
	}
	if name, _ := lookup1(x, "d2", 0); name != "d" || x.Len() != 3 {
		t.Fatalf("after Grow: d2 in %q, Len %d", name, x.Len())
	}
	var b Batch
	for f := range 1000 {
		addToBatch(x, &b, fmt.Sprint("g", f), Meta{}, entries(fmt.Sprint("g", f, "/"), 100))
	}
	x.AddBatch(&b)
	if x.Len() != 3+100000 {
		t.Fatalf("Len = %d", x.Len())
	}
}

// TestAddBatchConcurrent adds batches from several goroutines while others
// look up and forget; run with -race.
func TestAddBatchConcurrent(t *testing.T) {
	x := New()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			var b Batch
			for r := range 20 {
				b.Reset()
				for f := range 8 {
					addToBatch(x, &b, fmt.Sprint(w, "-", r, "-", f), Meta{FP: uint64(w)}, entries(fmt.Sprint(w, "-", r, "-", f, "/"), 16))
				}
				x.AddBatch(&b)
				hashes := []uint64{x.Hash(fmt.Sprint(w, "-", r, "-7/15"))}
				refs := make([]Ref, 1)
				if x.Lookup(hashes, uint64(w), refs, nil) != 1 {
					t.Errorf("worker %d round %d: last key of its batch missing", w, r)
					return
				}
				if r%2 == 1 {
					x.Forget(fmt.Sprint(w, "-", r, "-0"))
				}
			}
		})
	}
	wg.Wait()
	if got, want := x.Len(), 4*(20*8-10)*16; got != want {
		t.Fatalf("Len = %d, want %d", got, want)
	}
}
