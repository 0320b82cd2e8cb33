//go:build unix

package hostcache_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"unsafe"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// mambaCfg is a Mamba-style component pool: one slot per page, a temporal
// state of 96 bytes and a conv state of 40 bytes per slot.
var mambaCfg = hostcache.Config{Kind: hostcache.Component, Layout: hostcache.PageFirst, DType: hostcache.BFloat16,
	PageSize: 1, Pages: 10, BufferBytes: [hostcache.MaxComponentBuffers]int{96, 40}}

// TestComponentPoolMeta: a component page is one buffer per state, each in
// its own region at slot x bytes-per-slot, of PageSize x bytes-per-slot;
// the flat page is those buffers in order, and pages round-trip through it.
func TestComponentPoolMeta(t *testing.T) {
	for _, ps := range []int{1, 4} {
		cfg := mambaCfg
		cfg.PageSize = ps
		p, err := hostcache.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		slots := int64(cfg.Pages * ps)
		if p.PageBytes() != ps*136 || p.BuffersPerPage() != 2 || p.SizePerToken() != 136 {
			t.Fatalf("ps %d: PageBytes %d, BuffersPerPage %d, SizePerToken %d", ps, p.PageBytes(), p.BuffersPerPage(), p.SizePerToken())
		}
		base, size := p.Region()
		if int64(size) != slots*136 {
			t.Fatalf("Region size %d, want %d", size, slots*136)
		}
		idx := make([]int64, 2*ps)
		for i := range idx {
			idx[i] = int64(3*ps + i) // pages 3 and 4
		}
		ptrs, sizes, err := p.GetPageBufferMeta(idx)
		if err != nil {
			t.Fatal(err)
		}
		first := func(page int64) int64 { return page * int64(ps) }
		want := []uintptr{
			base + uintptr(first(3)*96), base + uintptr(slots*96+first(3)*40),
			base + uintptr(first(4)*96), base + uintptr(slots*96+first(4)*40),
		}
		if !slices.Equal(ptrs, want) || !slices.Equal(sizes, []int{96 * ps, 40 * ps, 96 * ps, 40 * ps}) {
			t.Fatalf("ps %d: meta %x %v, want %x", ps, ptrs, sizes, want)
		}
		flat, err := p.FlatPageBuffers(idx[:ps])
		if err != nil || len(flat) != 2 || uintptr(unsafe.Pointer(&flat[1][0])) != want[1] {
			t.Fatalf("FlatPageBuffers = %d buffers, %v", len(flat), err)
		}
		page := make([]byte, p.PageBytes())
		for i := range page {
			page[i] = byte(i*7 + 1)
		}
		if err := p.SetFromFlatDataPage(idx[0], page); err != nil {
			t.Fatal(err)
		}
		got, err := p.GetDataPage(idx[0])
		if err != nil || !bytes.Equal(got, page) || !bytes.Equal(flat[0], page[:96*ps]) || !bytes.Equal(flat[1], page[96*ps:]) {
			t.Fatalf("ps %d: the flat page did not round-trip through the buffers (%v)", ps, err)
		}
	}
}

// TestComponentPoolConfig: a component pool needs a page layout, a DType
// and at least one positive buffer size listed without gaps.
func TestComponentPoolConfig(t *testing.T) {
	bad := []func(c *hostcache.Config){
		func(c *hostcache.Config) { c.BufferBytes = [hostcache.MaxComponentBuffers]int{} },
		func(c *hostcache.Config) { c.BufferBytes[1] = -1 },
		func(c *hostcache.Config) { c.BufferBytes[3] = 8 },
		func(c *hostcache.Config) { c.Layout = hostcache.LayerFirst },
		func(c *hostcache.Config) { c.Layout = hostcache.PageHead },
		func(c *hostcache.Config) { c.DType = "" },
		func(c *hostcache.Config) { c.PageSize = 0 },
		func(c *hostcache.Config) { c.Pages = 0 },
		func(c *hostcache.Config) { c.Pages, c.PageSize, c.BufferBytes[0] = 1<<30, 1<<30, 1<<30 },
	}
	for i, f := range bad {
		c := mambaCfg
		f(&c)
		if err := c.Validate(); !errors.Is(err, hostcache.ErrInvalidConfig) {
			t.Errorf("case %d: Validate = %v, want ErrInvalidConfig", i, err)
		}
	}
	ok := mambaCfg
	ok.Layout, ok.LayerNum, ok.HeadNum = hostcache.PageFirstDirect, 0, -3 // ignored
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
	if hostcache.Component.String() != "Component" {
		t.Errorf("String = %q", hostcache.Component.String())
	}
}

// TestWrapComponentPool: a component pool wrapped over memory the test owns
// lists the same buffers, relative to its base, as New's.
func TestWrapComponentPool(t *testing.T) {
	n, err := hostcache.New(mambaCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	mem := mapOwned(t, n.PageBytes()*mambaCfg.Pages)
	w, err := hostcache.Wrap(mambaCfg, unsafe.Pointer(&mem[0]), len(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	idx := []int64{0, 5, 9}
	np, ns, err1 := n.GetPageBufferMeta(idx)
	wp, ws, err2 := w.GetPageBufferMeta(idx)
	if err1 != nil || err2 != nil || !slices.Equal(ns, ws) {
		t.Fatal(err1, err2, ns, ws)
	}
	nb, _ := n.Region()
	wb := uintptr(unsafe.Pointer(&mem[0]))
	for i := range np {
		if np[i]-nb != wp[i]-wb {
			t.Fatalf("buffer %d at offset %d wrapped, %d new", i, wp[i]-wb, np[i]-nb)
		}
	}
}
