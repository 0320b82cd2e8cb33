//go:build unix

package hostcache_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// wrapConfigs is one small pool of every kind and layout.
func wrapConfigs() []hostcache.Config {
	var out []hostcache.Config
	for _, kind := range []hostcache.Kind{hostcache.MHA, hostcache.MLA} {
		for _, layout := range layoutsOf(kind) {
			out = append(out, hostcache.Config{Kind: kind, Layout: layout, DType: hostcache.BFloat16,
				PageSize: 4, Pages: 6, LayerNum: 3, HeadNum: 2, HeadDim: 8, KVLoraRank: 8, QKRopeHeadDim: 4})
		}
	}
	return out
}

// mapOwned maps n bytes the test owns and unmaps them at cleanup.
func mapOwned(t *testing.T, n int) []byte {
	t.Helper()
	mem, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	return mem
}

// TestWrapGivesNewsMeta: a pool wrapped over memory the test owns lists the
// same buffers, relative to its base, as New's pool of the same Config, and
// reads and writes the owner's bytes in place.
func TestWrapGivesNewsMeta(t *testing.T) {
	for _, cfg := range wrapConfigs() {
		t.Run(cfg.Kind.String()+"/"+string(cfg.Layout), func(t *testing.T) {
			ref, err := hostcache.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			refBase, n := ref.Region()
			mem := mapOwned(t, n)
			w, err := hostcache.Wrap(cfg, unsafe.Pointer(&mem[0]), len(mem))
			if err != nil {
				t.Fatal(err)
			}
			base, wn := w.Region()
			if base != uintptr(unsafe.Pointer(&mem[0])) || wn != n {
				t.Fatalf("Region = %#x, %d; want %p, %d", base, wn, &mem[0], n)
			}
			idx := []int64{8, 9, 10, 11, 0, 1, 2, 3, 20, 21, 22, 23}
			wp, ws, err := w.GetPageBufferMeta(idx)
			if err != nil {
				t.Fatal(err)
			}
			rp, rs, err := ref.GetPageBufferMeta(idx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ws, rs) || len(wp) != len(rp) {
				t.Fatalf("sizes %v, New's %v", ws, rs)
			}
			for i := range wp {
				if wp[i]-base != rp[i]-refBase {
					t.Fatalf("buffer %d at offset %d, New's at %d", i, wp[i]-base, rp[i]-refBase)
				}
			}
			for i := range mem {
				mem[i] = byte(i * 7)
			}
			page, err := w.GetDataPage(8)
			if err != nil {
				t.Fatal(err)
			}
			flat, err := w.FlatPageBuffers(idx[:4])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(page, bytes.Join(flat, nil)) {
				t.Fatal("GetDataPage differs from FlatPageBuffers over the owner's bytes")
			}
			bufs, err := w.PageBuffers(idx[:4])
			if err != nil {
				t.Fatal(err)
			}
			for i, b := range bufs {
				if uintptr(unsafe.Pointer(&b[0])) != wp[i] || len(b) != ws[i] {
					t.Fatalf("PageBuffers[%d] differs from GetPageBufferMeta", i)
				}
			}
			zero := w.GetDummyFlatDataPage()
			if err := w.SetFromFlatDataPage(8, zero); err != nil {
				t.Fatal(err)
			}
			for _, b := range bufs {
				if !bytes.Equal(b, make([]byte, len(b))) {
					t.Fatal("SetFromFlatDataPage did not write the owner's memory")
				}
			}
		})
	}
}

// TestWrapCloseLeavesMemoryMapped: Close detaches a wrapped pool without
// unmapping the owner's memory; every later call returns ErrClosed.
func TestWrapCloseLeavesMemoryMapped(t *testing.T) {
	cfg := wrapConfigs()[0]
	n := poolBytes(t, cfg)
	mem := mapOwned(t, n)
	w, err := hostcache.Wrap(cfg, unsafe.Pointer(&mem[0]), n)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mem[0], mem[n-1] = 1, 2 // faults if Close unmapped the memory
	if err := w.Close(); !errors.Is(err, hostcache.ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if _, _, err := w.GetPageBufferMeta([]int64{0, 1, 2, 3}); !errors.Is(err, hostcache.ErrClosed) {
		t.Fatalf("GetPageBufferMeta after Close = %v, want ErrClosed", err)
	}
	if b, n := w.Region(); b != 0 || n != 0 {
		t.Fatalf("Region after Close = %#x, %d", b, n)
	}
}

// poolBytes returns the bytes a pool of cfg occupies.
func poolBytes(t *testing.T, cfg hostcache.Config) int {
	t.Helper()
	p, err := hostcache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, n := p.Region()
	return n
}

// TestWrapRefusesMemoryThatDoesNotFit: a nil base, too few bytes, a base not
// aligned to the element size, an invalid Config and Lock are refused with
// the matching error, and a larger region is accepted with its tail unused.
func TestWrapRefusesMemoryThatDoesNotFit(t *testing.T) {
	cfg := wrapConfigs()[0]
	n := poolBytes(t, cfg)
	mem := mapOwned(t, n+4096)
	base := unsafe.Pointer(&mem[0])
	bad := cfg
	bad.PageSize = 0
	locked := cfg
	locked.Lock = true
	for _, c := range []struct {
		name string
		cfg  hostcache.Config
		base unsafe.Pointer
		size int
		want error
	}{
		{"nil base", cfg, nil, n, hostcache.ErrBadRegion},
		{"one byte short", cfg, base, n - 1, hostcache.ErrBadRegion},
		{"zero size", cfg, base, 0, hostcache.ErrBadRegion},
		{"negative size", cfg, base, -1, hostcache.ErrBadRegion},
		{"unaligned base", cfg, unsafe.Pointer(&mem[1]), n, hostcache.ErrBadRegion},
		{"invalid config", bad, base, n, hostcache.ErrInvalidConfig},
		{"lock", locked, base, n, hostcache.ErrInvalidConfig},
	} {
		p, err := hostcache.Wrap(c.cfg, c.base, c.size)
		if !errors.Is(err, c.want) || p != nil {
			t.Errorf("%s: Wrap = %v, %v; want %v", c.name, p, err, c.want)
		}
	}
	p, err := hostcache.Wrap(cfg, base, len(mem))
	if err != nil {
		t.Fatalf("Wrap over a larger region: %v", err)
	}
	defer p.Close()
	if _, got := p.Region(); got != n {
		t.Fatalf("Region length %d, want the pool's %d", got, n)
	}
}
