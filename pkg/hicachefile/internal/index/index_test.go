package index

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// entries returns n entries with keys prefix0.. and entry offsets 100*i.
func entries(prefix string, n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		out[i] = Entry{Key: fmt.Sprint(prefix, i), Ent: uint32(100 * i), Page: uint32(i)}
	}
	return out
}

// lookup1 looks up one key for fp and returns the name of its file and its
// entry offset, or "" when the index holds no copy.
func lookup1(x *Index, key string, fp uint64) (string, uint32) {
	refs := make([]Ref, 1)
	if x.Lookup([]uint64{x.Hash(key)}, fp, refs, nil) == 0 {
		return "", 0
	}
	name, _, ok := x.File(refs[0].File)
	if !ok {
		return "", 0
	}
	return name, refs[0].Ent
}

func TestAddLookupForget(t *testing.T) {
	x := New()
	x.Add("a", Meta{FP: 1}, entries("k", 100), nil)
	x.Add("b", Meta{FP: 2}, entries("j", 10), nil)
	if got := x.Len(); got != 110 {
		t.Fatalf("Len = %d, want 110", got)
	}
	for i := range 100 {
		if name, ent := lookup1(x, fmt.Sprint("k", i), 1); name != "a" || ent != uint32(100*i) {
			t.Fatalf("k%d: got %q %d", i, name, ent)
		}
	}
	if name, _ := lookup1(x, "nope", 1); name != "" {
		t.Fatalf("missing key found in %q", name)
	}
	if !x.Has("a") || x.Has("c") {
		t.Fatal("Has")
	}
	if !x.Forget("a") || x.Forget("a") {
		t.Fatal("Forget reports")
	}
	if name, _ := lookup1(x, "k5", 1); name != "" {
		t.Fatalf("forgotten key found in %q", name)
	}
	if name, _ := lookup1(x, "j5", 2); name != "b" {
		t.Fatalf("j5 in %q", name)
	}
	if got := x.Len(); got != 10 {
		t.Fatalf("Len = %d after Forget, want 10", got)
	}
	x.Reset()
	if x.Len() != 0 || x.Has("b") {
		t.Fatal("Reset left something")
	}
}

func TestCopiesPreferFingerprint(t *testing.T) {
	x := New()
	x.Add("other", Meta{FP: 7}, []Entry{{Key: "k", Ent: 1}}, nil)
	if name, _ := lookup1(x, "k", 9); name != "other" {
		t.Fatalf("a copy of another fingerprint is still returned, got %q", name)
	}
	x.Add("mine", Meta{FP: 9}, []Entry{{Key: "k", Ent: 2}}, nil)
	if name, ent := lookup1(x, "k", 9); name != "mine" || ent != 2 {
		t.Fatalf("got %q %d, want mine 2", name, ent)
	}
	// A bad copy gives way to the next.
	refs := make([]Ref, 1)
	x.Lookup([]uint64{x.Hash("k")}, 9, refs, nil)
	x.Drop(x.Hash("k"), refs[0])
	if name, _ := lookup1(x, "k", 9); name != "other" {
		t.Fatalf("after Drop got %q, want other", name)
	}
	// skip passes over copies already tried.
	n := x.Lookup([]uint64{x.Hash("k")}, 9, refs, func(int, Ref) bool { return true })
	if n != 0 || refs[0].File != 0 {
		t.Fatalf("skip all: found %d %v", n, refs[0])
	}
}

func TestAddReplacesSameName(t *testing.T) {
	x := New()
	x.Add("f", Meta{FP: 1}, entries("k", 5), nil)
	x.Add("f", Meta{FP: 1}, entries("k", 3), nil)
	if got := x.Len(); got != 3 {
		t.Fatalf("Len = %d, want 3", got)
	}
	if name, _ := lookup1(x, "k4", 1); name != "" {
		t.Fatal("entry of the replaced file survived")
	}
	x.Add("skipped", Meta{}, nil, nil)
	if !x.Has("skipped") {
		t.Fatal("a file without entries is not known")
	}
}

func TestMetaOfGoneFile(t *testing.T) {
	x := New()
	x.Add("f", Meta{FP: 1, IndexOff: 4096, PageLen: 512}, entries("k", 1), nil)
	refs := make([]Ref, 1)
	metas := make([]Meta, 1)
	x.Lookup([]uint64{x.Hash("k0")}, 1, refs, nil)
	x.Meta(refs, metas)
	if metas[0].IndexOff != 4096 || metas[0].PageLen != 512 {
		t.Fatalf("meta %+v", metas[0])
	}
	x.Forget("f")
	x.Meta(refs, metas)
	if refs[0].File != 0 {
		t.Fatal("a ref to a forgotten file kept its file")
	}
}

// TestConcurrent runs lookups, adds, forgets and drops from several
// goroutines; run with -race.
func TestConcurrent(t *testing.T) {
	x := New()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for r := range 50 {
				name := fmt.Sprint("f", w, "-", r)
				es := entries(name+"/", 64)
				x.Add(name, Meta{FP: uint64(w)}, es, nil)
				hashes := make([]uint64, len(es))
				for i, e := range es {
					hashes[i] = x.Hash(e.Key)
				}
				refs := make([]Ref, len(es))
				if n := x.Lookup(hashes, uint64(w), refs, nil); n != len(es) {
					t.Errorf("found %d of %d", n, len(es))
					return
				}
				x.Drop(hashes[0], refs[0])
				if r%2 == 0 {
					x.Forget(name)
				}
			}
		})
	}
	wg.Wait()
	if got := x.Len(); got != 4*25*63 {
		t.Fatalf("Len = %d, want %d", got, 4*25*63)
	}
}

// TestTableAgainstModel drives one shard with hashes from a small set, so
// that probe runs collide, wrap around the end of the table and shift back
// on delete, and checks it against a plain multiset.
func TestTableAgainstModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		ops := make([]byte, 2000)
		for i := range ops {
			ops[i] = byte(r.Uint32())
		}
		checkTable(t, ops)
	}
}

// FuzzTable is TestTableAgainstModel on fuzzed operations.
func FuzzTable(f *testing.F) {
	f.Add([]byte{1, 2, 3, 130, 4, 250, 17, 17, 17, 200, 201})
	f.Fuzz(func(t *testing.T, ops []byte) { checkTable(t, ops) })
}

// checkTable applies ops to a shard and a model: each byte inserts (top bit
// clear) or removes (top bit set) a slot whose hash is one of 8 values
// crowded at the end of the table.
func checkTable(t *testing.T, ops []byte) {
	var s shard
	s.reset()
	type key struct {
		hash uint64
		ent  uint32
	}
	model := map[key]int{}
	for i, op := range ops {
		h := uint64(minSlots-3) + uint64(op&7)*uint64(1+op&0x10) // homes near and past the wrap
		ent := uint32(op>>3) & 3
		if op&0x80 == 0 {
			s.insert(makeSlot(h, 1, ent, 0))
			model[key{h, ent}]++
		} else {
			s.remove(h, func(sl slot) bool { return sl.ent == ent })
			delete(model, key{h, ent})
		}
		total := 0
		for k, n := range model {
			total += n
			got := 0
			for p := s.start(k.hash); s.slots[p].file != 0; p = (p + 1) & s.mask {
				if sl := s.slots[p]; sl.hash() == k.hash && sl.ent == k.ent {
					got++
				}
			}
			if got != n {
				t.Fatalf("op %d: hash %d ent %d reachable %d times, want %d", i, k.hash, k.ent, got, n)
			}
		}
		if s.count != total {
			t.Fatalf("op %d: count %d, want %d", i, s.count, total)
		}
	}
}

func TestHeapPerKey(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a million entries")
	}
	const files, per = 8000, 128
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	x := New()
	addFiles(x, files, per)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	perKey := float64(ms.HeapAlloc-before) / (files * per)
	if perKey > 64 {
		t.Fatalf("%.1f B of heap per key, want <= 64", perKey)
	}
	t.Logf("%.1f B of heap per key", perKey)
	runtime.KeepAlive(x)
}

// addFiles adds files batch files of per keys each, as hicachefile names
// them, with SGLang-sized (64-byte) keys.
func addFiles(x *Index, files, per int) {
	for f := range files {
		hashes := make([]uint64, per)
		ents := make([]uint32, per)
		pages := make([]uint32, per)
		for i := range per {
			hashes[i] = x.Hash(fmt.Sprintf("%064x", f*per+i))
			ents[i], pages[i] = uint32(i*86), uint32(i)
		}
		x.AddHashed(fmt.Sprintf("b%016x_model_0_1.batch.bin", f), Meta{FP: 1, PageLen: 512}, hashes, ents, pages)
	}
}

// BenchmarkBuild10M builds an index of 10 M pages (80,000 files x 128) and
// reports its heap per key and the time of one full garbage collection
// with the index live.
//
//	go test -run=NONE -bench=Build10M ./pkg/hicachefile/internal/index
func BenchmarkBuild10M(b *testing.B) {
	const files, per = 80000, 128
	for b.Loop() {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		x := New()
		addFiles(x, files, per)
		runtime.GC()
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc-before)/(files*per), "B/key")
		t0 := time.Now()
		runtime.GC()
		b.ReportMetric(float64(time.Since(t0).Nanoseconds()), "ns/GC")
		runtime.KeepAlive(x)
	}
}

// BenchmarkLookup times Lookup of 128 keys in an index of a million, from
// as many goroutines as -cpu says.
//
//	go test -run=NONE -bench=Lookup -cpu=1,2,4 ./pkg/hicachefile/internal/index
func BenchmarkLookup(b *testing.B) {
	x := New()
	addFiles(x, 8000, 128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		hashes := make([]uint64, 128)
		refs := make([]Ref, 128)
		f := rand.IntN(8000)
		for i := range hashes {
			hashes[i] = x.Hash(fmt.Sprintf("%064x", f*128+i))
		}
		for pb.Next() {
			if x.Lookup(hashes, 1, refs, nil) != 128 {
				b.Error("miss")
				return
			}
		}
	})
}

// TestLookupMeta checks that LookupMeta finds what Lookup and Meta find.
func TestLookupMeta(t *testing.T) {
	x := New()
	x.Add("a", Meta{FP: 1, IndexOff: 10, PageLen: 512}, []Entry{{Key: "k0"}, {Key: "k1", Ent: 30, Page: 1}}, nil)
	x.Add("b", Meta{FP: 2, IndexOff: 20, PageLen: 512}, []Entry{{Key: "k1"}}, nil)
	hashes := []uint64{x.Hash("k0"), x.Hash("k1"), x.Hash("k2")}
	for _, fp := range []uint64{1, 2, 3} {
		refs, metas := make([]Ref, 3), make([]Meta, 3)
		wantRefs, wantMetas := make([]Ref, 3), make([]Meta, 3)
		n := x.LookupMeta(hashes, fp, refs, metas)
		if want := x.Lookup(hashes, fp, wantRefs, nil); n != want {
			t.Fatalf("fp %d: LookupMeta found %d, Lookup %d", fp, n, want)
		}
		x.Meta(wantRefs, wantMetas)
		if !slices.Equal(refs, wantRefs) || !slices.Equal(metas, wantMetas) {
			t.Fatalf("fp %d: LookupMeta gave %v %v, Lookup and Meta %v %v", fp, refs, metas, wantRefs, wantMetas)
		}
		if refs[2].File != 0 {
			t.Fatalf("fp %d: found a key never added", fp)
		}
	}
}

// TestReusedIDIsAnotherFile pins that a Ref found before its file was
// forgotten never names the file that takes its id after: FileOf refuses
// it, Meta clears it, and Drop through it leaves the new file's copies.
func TestReusedIDIsAnotherFile(t *testing.T) {
	for _, reset := range []bool{false, true} {
		x := New()
		h := x.Hash("k")
		x.Add("old", Meta{FP: 1, IndexOff: 100, Size: 200}, []Entry{{Key: "k", Ent: 40, Page: 3}}, nil)
		refs := make([]Ref, 1)
		if x.Lookup([]uint64{h}, 1, refs, nil) != 1 {
			t.Fatal("k not found")
		}
		old := refs[0]
		if reset {
			x.Reset()
		} else if !x.Forget("old") {
			t.Fatal("old not known")
		}
		x.Add("new", Meta{FP: 1, IndexOff: 10, Size: 20}, []Entry{{Key: "k", Ent: 40, Page: 3}}, nil)
		if x.Lookup([]uint64{h}, 1, refs, nil) != 1 {
			t.Fatal("k not found in new")
		}
		if refs[0].File != old.File {
			t.Fatalf("reset=%v: the new file took id %d, not %d: the test does not test reuse", reset, refs[0].File, old.File)
		}
		if name, _, ok := x.FileOf(old); ok {
			t.Errorf("reset=%v: FileOf(stale ref) = %q, true", reset, name)
		}
		if name, meta, ok := x.FileOf(refs[0]); !ok || name != "new" || meta.Size != 20 {
			t.Errorf("FileOf(fresh ref) = %q, %+v, %v", name, meta, ok)
		}
		stale := []Ref{old}
		x.Meta(stale, make([]Meta, 1))
		if stale[0].File != 0 {
			t.Errorf("Meta kept the stale ref: %+v", stale[0])
		}
		x.Drop(h, old)
		if x.Lookup([]uint64{h}, 1, refs, nil) != 1 {
			t.Errorf("reset=%v: Drop through a stale ref removed the new file's copy", reset)
		}
	}
}
