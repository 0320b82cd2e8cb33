package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

// The seed's test_get_page_buffer_meta_integration: BatchSetV1 stores each
// page as its GetPageBufferMeta buffers, in pointer order, in batch files
// whose size the documented format predicts.
var _ = Describe("get_page_buffer_meta integration", func() {
	// documentedIndexSize is the index size from docs/format.md's byte layout:
	// keyLen u16, key, offset u64, length u64, crc u32 per entry.
	documentedIndexSize := func(keys []string) int64 {
		n := int64(0)
		for _, k := range keys {
			n += 2 + int64(len(k)) + 8 + 8 + 4
		}
		return n
	}

	DescribeTable("stores every page as its buffers in pointer order",
		func(kind hostcache.Kind, layout hostcache.Layout, n, pagesPerFile int, maxBytes func(pageBytes int64) int64) {
			p := mustPool(specShape.Of(kind, layout, hostcache.Float16))
			pageBytes := int64(p.PageBytes())
			cfg := hicachefile.Config{Dir: GinkgoT().TempDir(), ModelName: "org/model", IsMLA: kind == hostcache.MLA,
				MaxBatchFileBytes: maxBytes(pageBytes)}
			s := mustStore(cfg, p)
			idx := mustAlloc(p, n)
			fillRandom(p, idx)
			keys := keysN("meta", n)

			ok, err := s.BatchSetV1(keys, idx)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(Equal(trues(n)))

			keysOf := map[string][]string{} // batch file -> its keys
			for i, k := range keys {
				ptrs, sizes, err := p.GetPageBufferMeta(page(idx, i))
				Expect(err).NotTo(HaveOccurred())
				Expect(ptrs).To(HaveLen(p.BuffersPerPage()))
				sum := int64(0)
				for _, sz := range sizes {
					sum += int64(sz)
				}
				Expect(sum).To(Equal(pageBytes))

				// PageBuffers are the buffers GetPageBufferMeta names.
				bufs, err := p.PageBuffers(page(idx, i))
				Expect(err).NotTo(HaveOccurred())
				for j, b := range bufs {
					Expect(uintptr(unsafe.Pointer(unsafe.SliceData(b)))).To(Equal(ptrs[j]))
					Expect(b).To(HaveLen(sizes[j]))
				}

				loc, found := s.Locate(k)
				Expect(found).To(BeTrue(), "Locate(%q)", k)
				Expect(loc.Length).To(Equal(sum))
				Expect(loc.Offset % loc.Length).To(BeZero())
				Expect(filepath.Dir(loc.Path)).To(Equal(sgname.V1Dir(cfg)))
				Expect(filepath.Base(loc.Path)).To(HaveSuffix(sgname.Suffix(cfg) + ".batch.bin"))
				Expect(loc.Path).To(BeARegularFile())

				content, err := os.ReadFile(loc.Path)
				Expect(err).NotTo(HaveOccurred())
				Expect(int64(len(content))).To(BeNumerically(">=", loc.Offset+loc.Length))
				Expect(content[loc.Offset:loc.Offset+loc.Length]).To(Equal(pointerOrderBytes(p, page(idx, i))),
					"page %d at %s+%d", i, loc.Path, loc.Offset)
				keysOf[loc.Path] = append(keysOf[loc.Path], k)
			}

			Expect(keysOf).To(HaveLen((n + pagesPerFile - 1) / pagesPerFile))
			Expect(batchFiles(sgname.V1Dir(cfg))).To(HaveLen(len(keysOf)))
			for path, ks := range keysOf {
				Expect(len(ks)).To(BeNumerically("<=", pagesPerFile))
				Expect(hicachefile.IndexSize(ks)).To(Equal(documentedIndexSize(ks)))
				// docs/format.md: an identity of 19 bytes plus the model name, and a
				// 56-byte trailer.
				Expect(fileSize(path)).To(Equal(int64(len(ks))*pageBytes+documentedIndexSize(ks)+19+int64(len(cfg.ModelName))+56), path)
				Expect(fileSize(path)).To(Equal(int64(len(ks))*pageBytes+hicachefile.IndexSize(ks)+
					hicachefile.IdentitySize(cfg.ModelName)+hicachefile.TrailerSize), path)
			}
		},
		func(kind hostcache.Kind, layout hostcache.Layout, n, pagesPerFile int, _ func(int64) int64) string {
			return fmt.Sprintf("%s %s: %d pages, %d per file", kind, layout, n, pagesPerFile)
		},
		// One file: the default limit holds every page.
		Entry(nil, hostcache.MHA, hostcache.PageFirst, 6, 6, func(int64) int64 { return 0 }),
		Entry(nil, hostcache.MLA, hostcache.PageFirst, 6, 6, func(int64) int64 { return 0 }),
		// Several files: 3 pages each, the last one short.
		Entry(nil, hostcache.MHA, hostcache.LayerFirst, 8, 3, func(b int64) int64 { return 3 * b }),
		Entry(nil, hostcache.MHA, hostcache.PageFirstDirect, 8, 3, func(b int64) int64 { return 3*b + b/2 }),
		Entry(nil, hostcache.MHA, hostcache.PageHead, 9, 3, func(b int64) int64 { return 3 * b }),
		Entry(nil, hostcache.MLA, hostcache.LayerFirst, 8, 3, func(b int64) int64 { return 3 * b }),
		Entry(nil, hostcache.MLA, hostcache.PageFirstDirect, 7, 2, func(b int64) int64 { return 2*b + 1 }),
		// A limit below one page still holds one page per file.
		Entry(nil, hostcache.MHA, hostcache.PageFirst, 3, 1, func(b int64) int64 { return b - 1 }),
		Entry(nil, hostcache.MLA, hostcache.PageFirst, 3, 1, func(int64) int64 { return 1 }),
	)
})
