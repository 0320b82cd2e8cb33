package hostcache_test

import (
	"errors"
	"slices"
	"testing"
	"unsafe"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestAppendPageBuffers: AppendPageBuffers appends what PageBuffers returns
// for valid indices, and rejects a page whose first or last slot is wrong.
func TestAppendPageBuffers(t *testing.T) {
	for _, layout := range []hostcache.Layout{hostcache.LayerFirst, hostcache.PageFirst} {
		p, err := hostcache.New(hostcache.Config{Kind: hostcache.MHA, Layout: layout, DType: hostcache.Float16,
			PageSize: 4, Pages: 8, LayerNum: 2, HeadNum: 1, HeadDim: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		idx := []int64{8, 9, 10, 11, 0, 1, 2, 3}
		want, err := p.PageBuffers(idx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.AppendPageBuffers(make([][]byte, 1), idx)
		got = got[1:]
		if err != nil {
			t.Fatal(err)
		}
		addr := func(bs [][]byte) []uintptr {
			var out []uintptr
			for _, b := range bs {
				out = append(out, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
			}
			return out
		}
		if !slices.Equal(addr(got), addr(want)) {
			t.Fatalf("%s: AppendPageBuffers differs from PageBuffers", layout)
		}
		for _, c := range []struct {
			idx  []int64
			want error
		}{
			{[]int64{1, 2, 3, 4}, hostcache.ErrBadIndices},
			{[]int64{0, 1, 2, 5}, hostcache.ErrBadIndices},
			{[]int64{32, 33, 34, 35}, hostcache.ErrOutOfRange},
			{[]int64{0, 1, 2}, hostcache.ErrBadIndices},
		} {
			if _, err := p.AppendPageBuffers(nil, c.idx); !errors.Is(err, c.want) {
				t.Errorf("%s: AppendPageBuffers(%v) = %v, want %v", layout, c.idx, err, c.want)
			}
		}
	}
}
