package python

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// root is the module's root directory, found from this file's path.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// findPython returns the first of $HICACHE_GO_PYTHON, /usr/bin/python3 (the
// system interpreter, where Debian's python3-torch installs) and python3 on
// $PATH that can import torch, or "".
func findPython() string {
	candidates := []string{os.Getenv("HICACHE_GO_PYTHON"), "/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		if p != "" && exec.Command(p, "-c", "import torch").Run() == nil {
			return p
		}
	}
	return ""
}

// pageContent is the driver's page_content: SHA-256 of the key, repeated
// to n bytes.
func pageContent(key string, n int) []byte {
	d := sha256.Sum256([]byte(key))
	return bytes.Repeat(d[:], n/len(d)+1)[:n]
}

// geometry is one pool shape the driver and Go agree on.
type geometry struct {
	kind   hostcache.Kind
	layout hostcache.Layout
}

// poolConfig is the driver's default pool for g: 16 tokens a page, 64
// pages, 2 layers, bfloat16; MHA 2 heads of 8, MLA rank 8 + rope 4.
func (g geometry) poolConfig() hostcache.Config {
	return hostcache.Config{Kind: g.kind, Layout: g.layout, DType: hostcache.BFloat16, PageSize: 16, Pages: 64,
		LayerNum: 2, HeadNum: 2, HeadDim: 8, KVLoraRank: 8, QKRopeHeadDim: 4}
}

// args are the driver's pool flags for g.
func (g geometry) args() []string {
	kind := "mha"
	if g.kind == hostcache.MLA {
		kind = "mla"
	}
	return []string{"--kind", kind, "--layout", string(g.layout), "--page-size", "16", "--pages", "64",
		"--layers", "2", "--heads", "2", "--head-dim", "8", "--lora", "8", "--rope", "4"}
}

const (
	model = "spec/python-model"
	nKeys = 16
)

var _ = Describe("The Python bridge", Label("python"), Ordered, func() {
	var python, lib string

	BeforeAll(func() {
		python = findPython()
		if python == "" {
			Skip("no python3 here imports torch (apt-get install python3-torch python3-pytest, or set $HICACHE_GO_PYTHON): the Python bridge cannot be tested")
		}
		lib = filepath.Join(GinkgoT().TempDir(), "libhicache.so")
		build := exec.Command("go", "build", "-buildmode=c-shared", "-o", lib, "./cmd/libhicache")
		build.Dir = root()
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "go build -buildmode=c-shared: %s", out)
	})

	// driver runs python3 -m hicache_go.driver with args and returns its
	// output, failing the spec when it exits non-zero.
	driver := func(args ...string) string {
		cmd := exec.Command(python, append([]string{"-m", "hicache_go.driver"}, args...)...)
		cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(root(), "python"), "HICACHE_GO_LIB="+lib)
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "driver %v: %s", args, out)
		return string(out)
	}

	openGo := func(dir string, g geometry) (*hicachefile.Store, *hostcache.Pool) {
		p, err := hostcache.New(g.poolConfig())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Close)
		s, err := hicachefile.New(hicachefile.Config{Dir: dir, ModelName: model, TPSize: 1, IsMLA: g.kind == hostcache.MLA})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = s.Close() }) // the spec may close it first
		Expect(s.RegisterMemPoolHost(p)).To(Succeed())
		return s, p
	}

	slots := func(p *hostcache.Pool, pages int) []int64 {
		ps := p.Config().PageSize
		idx := make([]int64, 0, pages*ps)
		for i := range pages * ps {
			idx = append(idx, int64(i))
		}
		return idx
	}

	geometries := []TableEntry{
		Entry("MHA page_first", geometry{hostcache.MHA, hostcache.PageFirst}),
		Entry("MHA layer_first", geometry{hostcache.MHA, hostcache.LayerFirst}),
		Entry("MHA page_head", geometry{hostcache.MHA, hostcache.PageHead}),
		Entry("MLA page_first_direct", geometry{hostcache.MLA, hostcache.PageFirstDirect}),
	}

	DescribeTable("Go reads, byte for byte, the pages a Python process wrote through both interfaces",
		func(g geometry) {
			dir := GinkgoT().TempDir()
			driver(append([]string{"write", "--dir", dir, "--model", model, "--prefix", "py", "--keys", fmt.Sprint(nKeys)}, g.args()...)...)

			s, p := openGo(dir, g)
			keys := make([]string, nKeys)
			for i := range keys {
				keys[i] = fmt.Sprintf("py%04d", i)
			}
			Expect(s.BatchExists(keys)).To(Equal(nKeys))
			idx := slots(p, nKeys)
			ok, err := s.BatchGetV1(keys, idx)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(HaveEach(BeTrue()))
			for i, k := range keys {
				page, err := p.GetDataPage(idx[i*p.Config().PageSize])
				Expect(err).NotTo(HaveOccurred())
				Expect(page).To(Equal(pageContent(k, p.PageBytes())), "page %s", k)
			}
			for i := range nKeys {
				k := fmt.Sprintf("pyold%04d", i)
				dst := make([]byte, p.PageBytes())
				Expect(s.Get(k, dst)).To(Succeed())
				Expect(dst).To(Equal(pageContent(k, p.PageBytes())), "page %s", k)
			}
		}, geometries)

	DescribeTable("a Python process reads, byte for byte, the pages Go wrote through both interfaces",
		func(g geometry) {
			dir := GinkgoT().TempDir()
			s, p := openGo(dir, g)
			keys := make([]string, nKeys)
			idx := slots(p, nKeys)
			for i := range keys {
				keys[i] = fmt.Sprintf("go%04d", i)
				Expect(p.SetFromFlatDataPage(idx[i*p.Config().PageSize], pageContent(keys[i], p.PageBytes()))).To(Succeed())
				old := fmt.Sprintf("goold%04d", i)
				Expect(s.Set(old, pageContent(old, p.PageBytes()))).To(Succeed())
			}
			ok, err := s.BatchSetV1(keys, idx)
			Expect(err).NotTo(HaveOccurred())
			Expect(ok).To(HaveEach(BeTrue()))
			Expect(s.Close()).To(Succeed())

			driver(append([]string{"read", "--dir", dir, "--model", model, "--prefix", "go", "--keys", fmt.Sprint(nKeys)}, g.args()...)...)
		}, geometries)

	It("runs SGLang's three controller threads from Python with every page intact", func() {
		out := driver("controller", "--dir", GinkgoT().TempDir(), "--seconds", "2")
		Expect(out).To(ContainSubstring(`"failures": []`))
	})
})
