//go:build linux

package torture

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
	"github.com/hicache-go/hicache/specs/internal/sgname"
)

// nofileArgs are the arguments of the descriptor-limit child.
type nofileArgs struct {
	Store storeArgs
	Limit uint64 // RLIMIT_NOFILE, soft and hard
	Keys  int    // one batch file each
}

// nofileResult is what the descriptor-limit child counted.
type nofileResult struct {
	Limit                                  uint64
	Files                                  int
	Stored                                 int
	Served, ServedFresh, ServedDirect      int
	Wrong                                  int
	WrongPages                             []string
	WriteTime, ReadTime, OpenTime, Elapsed time.Duration
}

// nofileChild lowers its descriptor limit to a.Limit, then writes a.Keys
// stamped pages one batch file each, and reads them all back with one
// BatchGetV1: from the store that wrote them, from a fresh store that
// indexes every file at New, and from a fresh store with DirectIO, which
// may hold two descriptors per file.
func nofileChild(enc []byte) (any, error) {
	start := time.Now()
	var a nofileArgs
	if err := json.Unmarshal(enc, &a); err != nil {
		return nil, err
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: a.Limit, Max: a.Limit}); err != nil {
		return nil, err
	}
	res := nofileResult{Limit: a.Limit}
	const headDim = 8 // 512 B pages
	pool, err := hostcache.New(tortureShape(headDim, 2*a.Keys).Config())
	if err != nil {
		return nil, err
	}
	from, err := pool.Alloc(a.Keys * pageSize)
	if err != nil {
		return nil, err
	}
	into, err := pool.Alloc(a.Keys * pageSize)
	if err != nil {
		return nil, err
	}
	keys := keyNames(a.Keys)
	owner := "nofile"
	flat := make([]byte, pool.PageBytes())
	for i, k := range keys {
		stamp(flat, owner, k, 0, 0)
		if err := pool.SetFromFlatDataPage(from[i*pageSize], flat); err != nil {
			return nil, err
		}
	}
	cfg := a.Store.config()
	cfg.MaxBatchFileBytes = int64(pool.PageBytes()) // one page per file
	s, err := hicachefile.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.RegisterMemPoolHost(pool); err != nil {
		return nil, err
	}
	signalReady()
	t := time.Now()
	ok, err := s.BatchSetV1(keys, from)
	if err != nil {
		return nil, fmt.Errorf("torture: BatchSetV1 of %d keys under RLIMIT_NOFILE %d: %w", a.Keys, a.Limit, err)
	}
	res.WriteTime = time.Since(t)
	res.Stored = countTrue(ok)
	if ents, err := os.ReadDir(sgname.V1Dir(cfg)); err == nil {
		res.Files = len(ents)
	}

	scratch := make([]byte, pool.PageBytes())
	read := func(s *hicachefile.Store, what string) (int, error) {
		bufs, err := pool.PageBuffers(into)
		if err != nil {
			return 0, err
		}
		for _, b := range bufs {
			clear(b) // so that a page reported served but never read fails
		}
		ok, err := s.BatchGetV1(keys, into)
		if err != nil {
			return 0, fmt.Errorf("torture: %s: BatchGetV1 of %d keys under RLIMIT_NOFILE %d: %w", what, a.Keys, a.Limit, err)
		}
		for i := range ok {
			if !ok[i] {
				continue
			}
			got, err := pool.GetDataPage(into[i*pageSize])
			if err != nil {
				return 0, err
			}
			if _, good := verify(got, scratch, owner, keys[i]); !good {
				res.Wrong++
				if len(res.WrongPages) < 5 {
					res.WrongPages = append(res.WrongPages, fmt.Sprintf("%s: key %s: %s", what, keys[i], describe(got)))
				}
			}
		}
		return countTrue(ok), nil
	}
	t = time.Now()
	if res.Served, err = read(s, "the writer"); err != nil {
		return nil, err
	}
	res.ReadTime = time.Since(t)
	if err := s.Close(); err != nil {
		return nil, err
	}
	for _, direct := range []bool{false, true} {
		cfg.DirectIO = direct
		t = time.Now()
		f, err := hicachefile.New(cfg)
		if err != nil {
			return nil, fmt.Errorf("torture: New over %d files under RLIMIT_NOFILE %d: %w", a.Keys, a.Limit, err)
		}
		if !direct {
			res.OpenTime = time.Since(t)
		}
		if err := f.RegisterMemPoolHost(pool); err != nil {
			return nil, err
		}
		n, err := read(f, fmt.Sprintf("a fresh store (DirectIO %v)", direct))
		if err != nil {
			return nil, err
		}
		if direct {
			res.ServedDirect = n
		} else {
			res.ServedFresh = n
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// A call holds a bounded number of files open, so one
// BatchGetV1 over thousands of batch files works under a low descriptor
// limit, and a descriptor shortage is never a silent miss.
var _ = Describe("Descriptor limit", Serial, Label("torture"), func() {
	It("reads 10,000 keys from 10,000 batch files in one BatchGetV1 under RLIMIT_NOFILE 256", func() {
		const keys = 10_000
		c := startChild("nofile", nofileArgs{Store: storeArgs{Dir: GinkgoT().TempDir(), Model: "nofile"}, Limit: 256, Keys: keys})
		var res nofileResult
		c.result(5*time.Minute, &res)
		AddReportEntry("descriptor limit", fmt.Sprintf("RLIMIT_NOFILE %d: %d keys stored in %d batch files (%s); one BatchGetV1 served %d (%s), a fresh store %d (New %s), with DirectIO %d; %d wrong",
			res.Limit, res.Stored, res.Files, res.WriteTime.Round(time.Millisecond), res.Served, res.ReadTime.Round(time.Millisecond),
			res.ServedFresh, res.OpenTime.Round(time.Millisecond), res.ServedDirect, res.Wrong))
		Expect(res.WrongPages).To(BeEmpty())
		Expect(res.Stored).To(Equal(keys))
		Expect(res.Files).To(BeNumerically(">=", keys))
		Expect(res.Served).To(Equal(keys), "the writing store missed pages with err == nil")
		Expect(res.ServedFresh).To(Equal(keys), "a fresh store missed pages with err == nil")
		Expect(res.ServedDirect).To(Equal(keys), "a fresh DirectIO store missed pages with err == nil")
	})
})
