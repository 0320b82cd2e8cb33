//go:build linux

package torture

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// shared is memory that the processes of the several-process spec share
// (a MAP_SHARED mapping of one file), to tell a stale page from a page that
// a concurrent writer re-added after a Clear. Per group of processes with
// one store suffix, it holds:
//
//	epoch   the number of Clears started; a write stamps its pages with
//	        the epoch it started in
//	floor   the least epoch a page served now may carry: every page of an
//	        earlier epoch was written wholly before a Clear that has since
//	        returned, so serving it is serving stale KV
//	active  the Clears in progress
//
// and per writer a busy word: 1 + the epoch of its write in progress, or 0.
// A Clear raises epoch, then takes the least epoch of the busy writers of
// its group as the floor it publishes once it returns, so that a write in
// flight across a Clear may land after it (a concurrent writer re-adding,
// which is allowed: only what was written before Clear began must be gone).
type shared struct {
	mem []byte
}

const groupWords = 3

// openShared maps the file at path, of words 8-byte words, creating it.
func openShared(path string, words int) (*shared, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(int64(words * 8)); err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, words*8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &shared{mem: mem}, nil
}

func (m *shared) word(i int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&m.mem[i*8])) }

func (m *shared) epoch(group int) *atomic.Uint64  { return m.word(group * groupWords) }
func (m *shared) floor(group int) *atomic.Uint64  { return m.word(group*groupWords + 1) }
func (m *shared) active(group int) *atomic.Uint64 { return m.word(group*groupWords + 2) }

// procsArgs are the arguments of one process of the several-process spec.
type procsArgs struct {
	Store    storeArgs
	Owner    string // stamped into every page: the store's identity
	Shared   string // the shared file
	Words    int    // its size in 8-byte words
	Group    int    // this process's group
	Busy     []int  // the busy words of this process's writers
	Peers    []int  // the busy words of every writer of the group
	Keys     int
	HeadDim  int
	Batch    int
	Duration time.Duration
	Seed     uint64
}

// procsResult is what one process of the several-process spec counted.
type procsResult struct {
	Writes, PagesWritten   int // successful write calls, and pages they reported stored
	Excused                int // writes that failed while a Clear of the group ran
	Reads, Checked, Wrong  int // read calls, pages served and checked, wrong ones
	Clears, Reopens        int
	WrongPages, BadErrors  []string // the first few of each
	UnexcusedWriteFailures int
}

// procsChild writes, reads and clears one store for a.Duration, with a
// writer through each interface and a reader, and reopens the store now
// and then.
func procsChild(enc []byte) (any, error) {
	var a procsArgs
	if err := json.Unmarshal(enc, &a); err != nil {
		return nil, err
	}
	m, err := openShared(a.Shared, a.Words)
	if err != nil {
		return nil, err
	}
	keys := keyNames(a.Keys)
	pool, err := hostcache.New(tortureShape(a.HeadDim, 2*a.Batch).Config())
	if err != nil {
		return nil, err
	}
	writeAt, err := pool.Alloc(a.Batch * pageSize)
	if err != nil {
		return nil, err
	}
	readAt, err := pool.Alloc(a.Batch * pageSize)
	if err != nil {
		return nil, err
	}
	cfg := a.Store.config()
	var (
		mu  sync.RWMutex // held shared by every call, exclusively to reopen
		s   *hicachefile.Store
		res procsResult
		rmu sync.Mutex // guards res
	)
	open := func() error {
		var err error
		if s, err = hicachefile.New(cfg); err != nil {
			return err
		}
		return s.RegisterMemPoolHost(pool)
	}
	if err := open(); err != nil {
		return nil, err
	}
	signalReady()
	note := func(list *[]string, format string, args ...any) {
		if len(*list) < 5 {
			*list = append(*list, fmt.Sprintf(format, args...))
		}
	}
	pageBytes := pool.PageBytes()
	deadline := time.Now().Add(a.Duration)
	pick := func(r *rand.Rand) []string {
		n := 1 + r.IntN(a.Batch)
		out := make([]string, n)
		for j, i := range r.Perm(a.Keys)[:n] {
			out[j] = keys[i]
		}
		return out
	}

	// write runs one writer: v1 through BatchSetV1, else BatchSet.
	write := func(w int, v1 bool) {
		r := rand.New(rand.NewPCG(a.Seed, uint64(w)))
		busy := m.word(a.Busy[w])
		flat := make([][]byte, a.Batch)
		for i := range flat {
			flat[i] = make([]byte, pageBytes)
		}
		writer := uint32(a.Busy[w])
		for time.Now().Before(deadline) {
			bk := pick(r)
			// Announce the epoch this write stamps, and check that no
			// Clear raised it in between: that Clear then sees it busy.
			var gen uint64
			for {
				gen = m.epoch(a.Group).Load()
				busy.Store(gen + 1)
				if m.epoch(a.Group).Load() == gen {
					break
				}
			}
			active := m.active(a.Group).Load()
			for j, k := range bk {
				stamp(flat[j], a.Owner, k, gen, writer)
			}
			var ok []bool
			var err error
			mu.RLock()
			if v1 {
				for j := range bk {
					if err = pool.SetFromFlatDataPage(writeAt[j*pageSize], flat[j]); err != nil {
						break
					}
				}
				if err == nil {
					ok, err = s.BatchSetV1(bk, writeAt[:len(bk)*pageSize])
				}
			} else {
				ok, err = s.BatchSet(bk, flat[:len(bk)])
			}
			mu.RUnlock()
			cleared := active > 0 || m.epoch(a.Group).Load() != gen
			busy.Store(0)
			rmu.Lock()
			switch {
			case err == nil:
				res.Writes++
				res.PagesWritten += countTrue(ok)
			case cleared:
				res.Excused++
			default:
				res.UnexcusedWriteFailures++
				note(&res.BadErrors, "write of %d keys (v1 %v): %v", len(bk), v1, err)
			}
			rmu.Unlock()
		}
	}

	// read runs the reader: BatchGetV1 and BatchGet by turns, every page
	// served checked against its key's stamp and the group's floor.
	read := func() {
		r := rand.New(rand.NewPCG(a.Seed, 99))
		flat := make([][]byte, a.Batch)
		for i := range flat {
			flat[i] = make([]byte, pageBytes)
		}
		scratch := make([]byte, pageBytes)
		for i := 0; time.Now().Before(deadline); i++ {
			bk := pick(r)
			floor := m.floor(a.Group).Load()
			var ok []bool
			var err error
			mu.RLock()
			v1 := i%2 == 0
			if v1 {
				ok, err = s.BatchGetV1(bk, readAt[:len(bk)*pageSize])
			} else {
				ok, err = s.BatchGet(bk, flat[:len(bk)])
			}
			if i%16 == 0 {
				s.BatchExists(bk)
			}
			mu.RUnlock()
			rmu.Lock()
			res.Reads++
			if err != nil {
				note(&res.BadErrors, "read of %d keys (v1 %v): %v", len(bk), v1, err)
			}
			for j := range ok {
				if !ok[j] {
					continue
				}
				page := flat[j]
				if v1 {
					if page, err = pool.GetDataPage(readAt[j*pageSize]); err != nil {
						note(&res.BadErrors, "GetDataPage: %v", err)
						continue
					}
				}
				res.Checked++
				gen, good := verify(page, scratch, a.Owner, bk[j])
				switch {
				case !good:
					res.Wrong++
					note(&res.WrongPages, "key %s (v1 %v): not its page: %s", bk[j], v1, describe(page))
				case gen < floor:
					res.Wrong++
					note(&res.WrongPages, "key %s (v1 %v): stale: epoch %d, served after a Clear that leaves nothing below %d", bk[j], v1, gen, floor)
				}
			}
			rmu.Unlock()
		}
	}

	var wg sync.WaitGroup
	wg.Go(func() { write(0, true) })
	wg.Go(func() { write(1, false) })
	wg.Go(read)

	r := rand.New(rand.NewPCG(a.Seed, 7))
	var errs []error
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(500+r.IntN(2000)) * time.Millisecond)
		if !time.Now().Before(deadline) {
			break
		}
		if r.IntN(5) < 3 {
			mu.RLock()
			m.active(a.Group).Add(1)
			floor := m.epoch(a.Group).Add(1)
			for _, p := range a.Peers {
				if b := m.word(p).Load(); b != 0 && b-1 < floor {
					floor = b - 1
				}
			}
			err := s.Clear()
			for f := m.floor(a.Group).Load(); f < floor && !m.floor(a.Group).CompareAndSwap(f, floor); f = m.floor(a.Group).Load() {
			}
			m.active(a.Group).Add(^uint64(0))
			mu.RUnlock()
			rmu.Lock()
			res.Clears++
			if err != nil {
				note(&res.BadErrors, "Clear: %v", err)
			}
			rmu.Unlock()
		} else {
			mu.Lock()
			err := s.Close()
			if err == nil {
				err = open()
			}
			mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				break
			}
			rmu.Lock()
			res.Reopens++
			rmu.Unlock()
		}
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return res, s.Close()
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}

// Processes sharing one directory, as SGLang's TP
// ranks and restarted servers do, never serve a wrong or stale page.
var _ = Describe("Several processes", Serial, Label("torture"), func() {
	It("never serve a wrong or stale page while writing, reading and clearing one directory", func() {
		const (
			procs   = 4
			writers = 2 // busy words per process
			nKeys   = 256
			headDim = 64 // 4 KiB pages
			batch   = 16
		)
		pageBytes := int64(64 * headDim)
		dir := GinkgoT().TempDir()
		shm := filepath.Join(GinkgoT().TempDir(), "shared")
		// Processes 0 and 1 are TP rank 0 of 2, 2 and 3 rank 1: the same
		// model and keys, so the same names but for the rank.
		groupOf := func(p int) int { return p / 2 }
		var args []procsArgs
		for p := range procs {
			g := groupOf(p)
			var peers []int
			for q := range procs {
				if groupOf(q) == g {
					peers = append(peers, 2*groupWords+q*writers, 2*groupWords+q*writers+1)
				}
			}
			args = append(args, procsArgs{
				Store: storeArgs{Dir: dir, Model: "procs/model", TPRank: g, TPSize: 2,
					MaxBytes: 256 * pageBytes, MaxBatchFileBytes: 4 * pageBytes},
				Owner: fmt.Sprintf("rank %d", g), Shared: shm, Words: 2*groupWords + procs*writers, Group: g,
				Busy: []int{2*groupWords + p*writers, 2*groupWords + p*writers + 1}, Peers: peers,
				Keys: nKeys, HeadDim: headDim, Batch: batch, Duration: duration(), Seed: uint64(GinkgoRandomSeed()) + uint64(p),
			})
		}
		cs := make([]*child, procs)
		for p := range cs {
			cs[p] = startChild("procs", args[p])
		}
		var total procsResult
		results := make([]procsResult, procs)
		for p, c := range cs {
			res := &results[p]
			c.result(duration()+3*time.Minute, res)
			AddReportEntry(fmt.Sprintf("process %d (TP rank %d)", p, groupOf(p)), fmt.Sprintf(
				"%d writes (%d pages), %d failed during a Clear, %d other failures; %d reads, %d pages checked, %d wrong; %d Clears, %d reopens",
				res.Writes, res.PagesWritten, res.Excused, res.UnexcusedWriteFailures, res.Reads, res.Checked, res.Wrong, res.Clears, res.Reopens))
			total.Checked += res.Checked
			total.Wrong += res.Wrong
			total.PagesWritten += res.PagesWritten
			total.Clears += res.Clears
		}
		AddReportEntry("several processes", fmt.Sprintf("%d processes on one directory for %s: %d pages written, %d Clears, %d pages checked, %d wrong",
			procs, duration(), total.PagesWritten, total.Clears, total.Checked, total.Wrong))
		for p, res := range results {
			Expect(res.WrongPages).To(BeEmpty(), "process %d served wrong pages", p)
			Expect(res.BadErrors).To(BeEmpty(), "process %d met errors", p)
			Expect(res.PagesWritten).To(BeNumerically(">", 0), "process %d wrote nothing", p)
			Expect(res.Checked).To(BeNumerically(">", 0), "process %d was never served a page", p)
		}
	})
})
