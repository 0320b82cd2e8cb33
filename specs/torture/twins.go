//go:build linux

package torture

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
)

// twinOwner names a store in its pages' stamps by its whole identity:
// twins share SGLang's suffix, so ownerOf (the suffix) would not tell them
// apart.
func twinOwner(cfg hicachefile.Config) string {
	return fmt.Sprintf("model %q, MLA %v, TP %d of %d", cfg.ModelName, cfg.IsMLA, cfg.TPRank, cfg.TPSize)
}

// Two identities whose SGLang suffixes coincide (SGLang maps
// '/' in a model name to '-'; an MHA suffix ends in the TP rank and size,
// which an MLA model's name may end in too) share a directory without
// touching each other's batch files: one's Clear and eviction leave every
// page of the other served.
var _ = Describe("Suffix twins", Label("torture"), func() {
	const (
		nKeys = 8  // each twin's keys, the same for both
		flood = 32 // pages the evicting twin writes, 2 a call, to evict
		bound = 8 << 10
	)
	DescribeTable("neither twin's Clear or eviction removes the other's batch files",
		func(a, b hicachefile.Config, action string) {
			dir := GinkgoT().TempDir()
			a.Dir, b.Dir = dir, dir
			keys := keyNames(nKeys)
			for _, pair := range [][2]hicachefile.Config{{a, b}, {b, a}} {
				actor, other := pair[0], pair[1]
				if action == "eviction" {
					actor.MaxBytes = bound // about a dozen of its 512-byte pages
					actor.MaxBatchFileBytes = 512
				}
				ra := newBatchRig(actor, twinOwner(actor), flood)
				ro := newBatchRig(other, twinOwner(other), nKeys)
				ro.pool = ra.pool // the same shape: only the identities differ
				ro.from, ro.into = ra.from, ra.into
				sa, so := ra.open(actor), ro.open(other)
				Expect(ro.set(so, 0, keys)).To(HaveEach(BeTrue()))
				Expect(ra.set(sa, 0, keys[:2])).To(HaveEach(BeTrue()))
				served, _ := ro.get(so, keys)
				Expect(served).To(Equal(nKeys))
				files := len(batchFiles(dir))

				switch action {
				case "Clear":
					Expect(sa.Clear()).To(Succeed())
					n, _ := ra.get(sa, keys[:2])
					Expect(n).To(BeZero(), "%s served its pages after its Clear", twinOwner(actor))
				case "eviction":
					more := keyNames(nKeys + flood)[nKeys:]
					for i := 0; i < flood; i += 2 {
						Expect(ra.set(sa, 0, more[i:i+2])).To(HaveEach(BeTrue()))
					}
					Expect(sa.Stats().Evicted).To(BeNumerically(">", 0), "%s evicted nothing", twinOwner(actor))
				}

				served, _ = ro.get(so, keys)
				fresh, _ := ro.get(ro.open(other), keys)
				AddReportEntry("suffix twins", fmt.Sprintf("%s's %s: %s still served %d of %d pages (a fresh store of it %d); batch files in the directory before %d, after %d",
					twinOwner(actor), action, twinOwner(other), served, nKeys, fresh, files, len(batchFiles(dir))))
				Expect(served).To(Equal(nKeys), "%s's %s removed pages of %s", twinOwner(actor), action, twinOwner(other))
				Expect(fresh).To(Equal(nKeys), "%s's %s removed pages of %s", twinOwner(actor), action, twinOwner(other))
				Expect(so.BatchExists(keys)).To(Equal(nKeys))
				Expect(so.Clear()).To(Succeed()) // the next direction starts afresh
				Expect(sa.Clear()).To(Succeed())
			}
		},
		Entry("model org/m and org-m, Clear",
			hicachefile.Config{ModelName: "org/m", TPSize: 1}, hicachefile.Config{ModelName: "org-m", TPSize: 1}, "Clear"),
		Entry("model org/m and org-m, eviction",
			hicachefile.Config{ModelName: "org/m", TPSize: 1}, hicachefile.Config{ModelName: "org-m", TPSize: 1}, "eviction"),
		Entry("MHA m on TP 0 of 1 and MLA m_0_1, Clear",
			hicachefile.Config{ModelName: "m", TPSize: 1}, hicachefile.Config{ModelName: "m_0_1", IsMLA: true, TPSize: 1}, "Clear"),
		Entry("MHA m on TP 0 of 1 and MLA m_0_1, eviction",
			hicachefile.Config{ModelName: "m", TPSize: 1}, hicachefile.Config{ModelName: "m_0_1", IsMLA: true, TPSize: 1}, "eviction"),
	)
})
