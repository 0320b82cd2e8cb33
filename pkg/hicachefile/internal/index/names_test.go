package index

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestNamesAgainstModel adds, replaces and forgets files of a few hundred
// names in random order, so that the name table grows, shrinks and shifts
// probe runs back, and checks Has, MetaOf, Files and Len against a map;
// then forgets every file.
func TestNamesAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := New()
	model := map[string]int64{} // name -> Meta.IndexOff of its live file
	for op := range 5000 {
		name := fmt.Sprint("f", r.IntN(300))
		if r.IntN(3) == 0 {
			_, had := model[name]
			if x.Forget(name) != had {
				t.Fatalf("op %d: Forget(%s) reports %v, want %v", op, name, !had, had)
			}
			delete(model, name)
		} else {
			off := int64(op)
			x.Add(name, Meta{IndexOff: off}, entries(name+"/", 1), nil)
			model[name] = off
		}
		if op%97 != 0 {
			continue
		}
		for i := range 300 {
			n := fmt.Sprint("f", i)
			off, want := model[n]
			meta, ok := x.MetaOf(n)
			if x.Has(n) != want || ok != want || ok && meta.IndexOff != off {
				t.Fatalf("op %d: %s: Has %v, MetaOf %+v %v; want %v at %d", op, n, x.Has(n), meta, ok, want, off)
			}
		}
		seen := 0
		x.Files(func(n string) {
			if _, ok := model[n]; !ok {
				t.Fatalf("op %d: Files lists %s, which is not live", op, n)
			}
			seen++
		})
		if seen != len(model) || x.Len() != len(model) {
			t.Fatalf("op %d: Files lists %d, Len %d; want %d", op, seen, x.Len(), len(model))
		}
	}
	// Forget them all: the table shrinks back as it empties.
	for n := range model {
		if !x.Forget(n) {
			t.Fatalf("Forget(%s) found nothing", n)
		}
	}
	if x.Len() != 0 || x.names.count != 0 || len(x.names.slots) != minNameSlots {
		t.Fatalf("after forgetting all: Len %d, %d names in %d slots", x.Len(), x.names.count, len(x.names.slots))
	}
}
