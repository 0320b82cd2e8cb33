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
	ops := make([]byte, 10000)
	for i := range ops {
		ops[i] = byte(r.Uint32())
	}
	checkNames(t, ops, 300)
}

// FuzzNames is TestNamesAgainstModel on fuzzed operations, over fewer
// names, so that they collide in a small table.
func FuzzNames(f *testing.F) {
	f.Add([]byte{1, 2, 3, 0x81, 4, 0x82, 17, 17, 0x91, 200, 201})
	f.Fuzz(func(t *testing.T, ops []byte) { checkNames(t, ops, 40) })
}

// checkNames applies ops to an index and a model. ops are pairs of bytes:
// the first picks one of n names, the second forgets the file of that name
// (below 64) or adds one with one key, replacing any. It checks the index
// against the model after each of the first 100 operations, then now and
// then, and at the end; then it forgets every file.
func checkNames(t *testing.T, ops []byte, n int) {
	x := New()
	model := map[string]int64{} // name -> Meta.IndexOff of its live file
	check := func(op int) {
		t.Helper()
		for i := range n {
			name := fmt.Sprint("f", i)
			off, want := model[name]
			meta, ok := x.MetaOf(name)
			if x.Has(name) != want || ok != want || ok && meta.IndexOff != off {
				t.Fatalf("op %d: %s: Has %v, MetaOf %+v %v; want %v at %d", op, name, x.Has(name), meta, ok, want, off)
			}
		}
		seen := 0
		x.Files(func(name string) {
			if _, ok := model[name]; !ok {
				t.Fatalf("op %d: Files lists %s, which is not live", op, name)
			}
			seen++
		})
		if seen != len(model) || x.Len() != len(model) {
			t.Fatalf("op %d: Files lists %d, Len %d; want %d", op, seen, x.Len(), len(model))
		}
	}
	for op := 0; op+1 < len(ops); op += 2 {
		name := fmt.Sprint("f", int(ops[op])%n)
		if ops[op+1] < 64 {
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
		if op < 200 || op%97 == 0 {
			check(op)
		}
	}
	check(len(ops))
	// Forget them all: the table shrinks back as it empties.
	for name := range model {
		if !x.Forget(name) {
			t.Fatalf("Forget(%s) found nothing", name)
		}
	}
	if x.Len() != 0 || x.names.count != 0 || len(x.names.slots) != minNameSlots {
		t.Fatalf("after forgetting all: Len %d, %d names in %d slots", x.Len(), x.names.count, len(x.names.slots))
	}
}
