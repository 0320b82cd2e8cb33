//go:build linux

package torture

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// The full-disk specs' file system: 8 MiB, of which a neighbour's file
// takes 2 MiB, against 64 KiB pages written 8 or 4 at a time.
const (
	diskBytes     = 8 << 20
	ballastBytes  = 2 << 20
	diskHeadDim   = 1024 // 64 KiB pages
	diskV1Pages   = 8
	diskOldPages  = 4
	diskWrites    = 60
	diskKeys      = diskWrites * diskV1Pages
	diskMinFree   = 1 << 20
	diskNoEvictAt = 200 // writes before a store that cannot evict must have failed
)

// smallDisk is a small file system for a spec: a tmpfs of diskBytes the
// spec mounts where it may, else a directory on the real disk whose
// fullness the store's Syscalls seam simulates.
type smallDisk struct {
	dir     string
	mounted bool
}

// mountSmallDisk mounts a tmpfs of diskBytes on a new temp dir, unmounted
// when the spec ends. Where mounting is not permitted, it says so in a
// report entry and on GinkgoWriter, and returns a plain temp dir: the spec
// then fills it through syscalls(), which refuses writes past diskBytes
// with ENOSPC.
func mountSmallDisk() smallDisk {
	GinkgoHelper()
	d := smallDisk{dir: GinkgoT().TempDir()}
	err := unix.Mount("tmpfs", d.dir, "tmpfs", 0, fmt.Sprintf("size=%d", diskBytes))
	switch {
	case err == nil:
		d.mounted = true
		DeferCleanup(func() { Expect(unix.Unmount(d.dir, unix.MNT_DETACH)).To(Succeed()) })
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		msg := fmt.Sprintf("mounting a tmpfs is not permitted here (%v): the full disk is simulated through Config.Syscalls, which returns ENOSPC once the directory holds %d bytes", err, diskBytes)
		AddReportEntry("full disk: no tmpfs", msg)
		fmt.Fprintln(GinkgoWriter, msg)
	default:
		Fail(fmt.Sprintf("mount tmpfs on %s: %v", d.dir, err))
	}
	return d
}

// syscalls returns the Syscalls a store on d uses: the real ones on a
// tmpfs; where d is simulated, a Pwritev that fails with ENOSPC when the
// write would grow the files under d past diskBytes.
func (d smallDisk) syscalls() hicachefile.Syscalls {
	if d.mounted {
		return hicachefile.Syscalls{}
	}
	return hicachefile.Syscalls{Pwritev: func(fd int, iovs [][]byte, off int64) (int, error) {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return 0, err
		}
		n := int64(0)
		for _, v := range iovs {
			n += int64(len(v))
		}
		if grow := off + n - st.Size; grow > 0 && usedBytes(d.dir)+grow > diskBytes {
			return 0, unix.ENOSPC
		}
		return unix.Pwritev(fd, iovs, off)
	}}
}

// free returns the bytes free on d: statvfs on a tmpfs, else what the
// simulation leaves.
func (d smallDisk) free() int64 {
	GinkgoHelper()
	if !d.mounted {
		return diskBytes - usedBytes(d.dir)
	}
	var st unix.Statfs_t
	Expect(unix.Statfs(d.dir, &st)).To(Succeed())
	return int64(st.Bavail) * int64(st.Bsize)
}

// usedBytes sums the sizes of the regular files under dir.
func usedBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// A store that may evict makes room on a full disk
// instead of failing writes; one that may not returns ENOSPC once.
var _ = Describe("Full disk", Serial, Label("torture"), func() {
	var (
		disk   smallDisk
		pool   *hostcache.Pool
		cfg    hicachefile.Config
		keys   []string
		owner  = "disk-model"
		v1At   []int64
		oldBuf [][]byte
	)
	BeforeEach(func() {
		disk = mountSmallDisk()
		var err error
		pool, err = hostcache.New(tortureShape(diskHeadDim, diskV1Pages).Config())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(pool.Close)
		v1At, err = pool.Alloc(diskV1Pages * pageSize)
		Expect(err).NotTo(HaveOccurred())
		oldBuf = make([][]byte, diskOldPages)
		for i := range oldBuf {
			oldBuf[i] = make([]byte, pool.PageBytes())
		}
		// A neighbour's file: never the store's to remove.
		Expect(os.WriteFile(filepath.Join(disk.dir, "neighbour.dat"), make([]byte, ballastBytes), 0o644)).To(Succeed())
		cfg = hicachefile.Config{Dir: disk.dir, ModelName: owner, MaxBatchFileBytes: 4 * int64(pool.PageBytes()),
			IOWorkers: 2, Syscalls: disk.syscalls()}
		keys = keyNames(diskKeys)
	})

	// write makes the w-th write: BatchSetV1 of 8 pages, or BatchSet of 4
	// every third time, each page stamped from its key.
	write := func(s *hicachefile.Store, w int) ([]bool, error) {
		GinkgoHelper()
		bk := keys[w*diskV1Pages : (w+1)*diskV1Pages]
		if w%3 == 2 {
			bk = bk[:diskOldPages]
			for j, k := range bk {
				stamp(oldBuf[j], owner, k, 0, 0)
			}
			return s.BatchSet(bk, oldBuf)
		}
		flat := make([]byte, pool.PageBytes())
		for j, k := range bk {
			stamp(flat, owner, k, 0, 0)
			Expect(pool.SetFromFlatDataPage(v1At[j*pageSize], flat)).To(Succeed())
		}
		return s.BatchSetV1(bk, v1At)
	}
	// checkServed reads every key back through BatchGetV1 and fails on a
	// wrong page; it returns how many were served.
	checkServed := func(s *hicachefile.Store) int {
		GinkgoHelper()
		served := 0
		scratch := make([]byte, pool.PageBytes())
		for from := 0; from < len(keys); from += diskV1Pages {
			bk := keys[from : from+diskV1Pages]
			ok, err := s.BatchGetV1(bk, v1At)
			Expect(err).NotTo(HaveOccurred())
			for j := range ok {
				if ok[j] {
					served++
					got, err := pool.GetDataPage(v1At[j*pageSize])
					Expect(err).NotTo(HaveOccurred())
					_, good := verify(got, scratch, owner, bk[j])
					Expect(good).To(BeTrue(), "key %s: wrong page: %s", bk[j], describe(got))
				}
			}
		}
		return served
	}
	checkNoTemp := func() {
		GinkgoHelper()
		left, err := leftovers(cfg, keys)
		Expect(err).NotTo(HaveOccurred())
		Expect(left).To(ConsistOf("neighbour.dat"), "temp files left on the full disk")
		Expect(fileSizeOf(filepath.Join(disk.dir, "neighbour.dat"))).To(BeEquivalentTo(ballastBytes))
	}

	DescribeTable("no write fails while the store holds evictable files",
		func(maxBytes int64, minFree bool) {
			cfg.MaxBytes = maxBytes
			if minFree {
				cfg.MinFreeBytes = diskMinFree
			}
			s, err := hicachefile.New(cfg)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { _ = s.Close() })
			Expect(s.RegisterMemPoolHost(pool)).To(Succeed())
			written := 0
			for w := range diskWrites {
				ok, err := write(s, w)
				Expect(err).NotTo(HaveOccurred(), "write %d of %d pages, with %d bytes free", w, len(ok), disk.free())
				Expect(ok).To(HaveEach(BeTrue()))
				written += len(ok)
				if minFree && disk.mounted {
					Expect(disk.free()).To(BeNumerically(">=", diskMinFree), "after write %d", w)
				}
			}
			served := checkServed(s)
			checkNoTemp()
			st := s.Stats()
			AddReportEntry("full disk, "+CurrentSpecReport().LeafNodeText, fmt.Sprintf("%d writes, %d pages (%d MiB) through an %d MiB file system (tmpfs: %v); %d files evicted; %d pages served and checked, 0 wrong; %d bytes free at the end",
				diskWrites, written, written*pool.PageBytes()>>20, diskBytes>>20, disk.mounted, st.Evicted, served, disk.free()))
			Expect(st.Evicted).To(BeNumerically(">", 0))
			Expect(served).To(BeNumerically(">", 0))
		},
		Entry("with MaxBytes above the disk's size", int64(64<<20), false),
		Entry("with MinFreeBytes", int64(0), true),
	)

	It("returns ENOSPC, once, and leaves no temp file, when the store may not evict", func() {
		s, err := hicachefile.New(cfg)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = s.Close() })
		Expect(s.RegisterMemPoolHost(pool)).To(Succeed())
		var werr error
		w := 0
		for ; w < diskNoEvictAt && werr == nil; w++ {
			_, werr = write(s, w%diskWrites)
			if w%diskWrites == diskWrites-1 {
				Expect(s.Clear()).To(Succeed()) // only if the disk never filled
			}
		}
		Expect(werr).To(MatchError(unix.ENOSPC))
		lines := strings.Split(werr.Error(), "\n")
		Expect(lines).To(HaveLen(len(uniq(lines))), "the same failure reported twice: %v", werr)
		checkNoTemp()
		// The failure is what this spec asks for: the report says so, and
		// the error itself is shown only with -v or when the spec fails.
		AddReportEntry("full disk, no eviction", fmt.Sprintf("write %d returned ENOSPC, as expected of a store that may not evict (tmpfs: %v)", w, disk.mounted))
		AddReportEntry("full disk, no eviction: the expected error", werr.Error(), ReportEntryVisibilityFailureOrVerbose)
		checkServed(s)
	})
})

// fileSizeOf returns the size of the file at path, or -1.
func fileSizeOf(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// uniq returns the distinct strings of ss.
func uniq(ss []string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}
