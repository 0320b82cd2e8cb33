package hicachefile

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/pools"
)

// The shapes the specs use: small, so that the suite stays fast.
const (
	pageSize  = 4
	poolPages = 64
)

// specShape is the small pool shape of the specs: ps=4, L=2, and H=2, D=8
// for MHA or R=8+4 for MLA; specShape.Of gives a pool of a kind, layout
// and dtype.
var specShape = pools.Shape{PageSize: pageSize, Pages: poolPages, Layers: 2, Heads: 2, HeadDim: 8, LoraRank: 8, RopeDim: 4}

// layoutsOf lists the layouts kind supports: every layout for MHA, the
// first three for MLA.
func layoutsOf(kind hostcache.Kind) []hostcache.Layout {
	if kind == hostcache.MLA {
		return hostcache.Layouts[:3]
	}
	return hostcache.Layouts
}

// mustPool returns a new pool of cfg, closed when the current node ends.
func mustPool(cfg hostcache.Config) *hostcache.Pool {
	GinkgoHelper()
	p, err := hostcache.New(cfg)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(p.Close)
	return p
}

// mustStore returns a new store of cfg with p registered (unless nil),
// closed when the current node ends unless the spec closed it first.
func mustStore(cfg hicachefile.Config, p *hostcache.Pool) *hicachefile.Store {
	GinkgoHelper()
	s, err := hicachefile.New(cfg)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = s.Close() })
	if p != nil {
		Expect(s.RegisterMemPoolHost(p)).To(Succeed())
	}
	return s
}

// mustAlloc allocates n pages of p, freed when the current node ends.
func mustAlloc(p *hostcache.Pool, n int) []int64 {
	GinkgoHelper()
	idx, err := p.Alloc(n * p.Config().PageSize)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = p.Free(idx) })
	return idx
}

// page returns the host indices of the i-th page of idx.
func page(idx []int64, i int) []int64 { return idx[i*pageSize : (i+1)*pageSize] }

// fillRandom writes random bytes into every page at idx.
func fillRandom(p *hostcache.Pool, idx []int64) {
	GinkgoHelper()
	bufs, err := p.PageBuffers(idx)
	Expect(err).NotTo(HaveOccurred())
	for _, b := range bufs {
		_, _ = rand.Read(b)
	}
}

// dataPages returns GetDataPage of every page at idx.
func dataPages(p *hostcache.Pool, idx []int64) [][]byte {
	GinkgoHelper()
	out := make([][]byte, len(idx)/pageSize)
	for i := range out {
		var err error
		out[i], err = p.GetDataPage(idx[i*pageSize])
		Expect(err).NotTo(HaveOccurred())
	}
	return out
}

// pointerOrderBytes returns the page at indices (one page) as its buffers in
// GetPageBufferMeta order, concatenated.
func pointerOrderBytes(p *hostcache.Pool, indices []int64) []byte {
	GinkgoHelper()
	bufs, err := p.PageBuffers(indices)
	Expect(err).NotTo(HaveOccurred())
	return bytes.Join(bufs, nil)
}

// keysN returns n keys shaped like SGLang's hex hashes: prefix then 4 hex
// digits, no '_'.
func keysN(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%04x", prefix, i)
	}
	return keys
}

// trues returns n true values.
func trues(n int) []bool {
	b := make([]bool, n)
	for i := range b {
		b[i] = true
	}
	return b
}

// batchFiles lists the .batch.bin files in dir.
func batchFiles(dir string) []string {
	GinkgoHelper()
	names, err := filepath.Glob(filepath.Join(dir, "*.batch.bin"))
	Expect(err).NotTo(HaveOccurred())
	return names
}

// flipByte inverts the bits of the byte at off in the file at path.
func flipByte(path string, off int64) {
	GinkgoHelper()
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	Expect(off).To(BeNumerically("<", len(b)))
	b[off] ^= 0xff
	Expect(os.WriteFile(path, b, 0o644)).To(Succeed())
}

// fileSize returns the size of the file at path.
func fileSize(path string) int64 {
	GinkgoHelper()
	st, err := os.Stat(path)
	Expect(err).NotTo(HaveOccurred())
	return st.Size()
}
