package perf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// Names of the timings, as the seed prints them.
const (
	timeBatchSet   = "batch_set"
	timeBatchGet   = "batch_get"
	timeBatchSetV1 = "batch_set_v1"
	timeBatchGetV1 = "batch_get_v1"
	timePwrite     = "pwrite"
	timePread      = "pread"
)

// side is one way of moving a batch of pages to storage and back.
type side int

const (
	sideOld side = iota
	sideNew
	sideFloor
)

// rig is one preset's pool and store in one directory. Writes come from the
// source slots; reads go into the separate read slots, which are zeroed
// first, so that every read can be checked against what was written.
type rig struct {
	p      preset
	dir    string
	direct bool // -perf-direct: the new and floor sides read with O_DIRECT
	pool   *hostcache.Pool
	store  *hicachefile.Store

	ps       int      // tokens per page
	perPage  int      // buffers per page
	src, dst []int64  // host indices: maxKeys pages each
	srcBufs  [][]byte // the source pages' buffers, perPage per page
	dstBufs  [][]byte // the read slots' buffers
	serial   uint64   // counts samples, stamped into the source pages

	reads    readBytes // what the new and floor sides read, since the scenario reset it
	floorWhy string    // why the floor last read a page through the page cache in direct mode
}

// readBytes counts the bytes the new and floor sides read, and how many of
// them went O_DIRECT.
type readBytes struct {
	v1, v1Direct       int64 // BatchGetV1, from the store's Stats
	floor, floorDirect int64 // the floor's pread
}

// newRig builds a pool of 2*maxKeys pages for p, fills the source pages
// with random bytes and opens a store on dir with the pool registered. With
// direct, the store reads V1 pages with O_DIRECT and so does the floor.
func newRig(p preset, dir string, maxKeys int, direct bool) (r *rig, err error) {
	cfg := p.pool
	cfg.Pages = 2 * maxKeys
	pool, err := hostcache.New(cfg)
	if err != nil {
		return nil, err
	}
	r = &rig{p: p, dir: dir, direct: direct, pool: pool, ps: cfg.PageSize, perPage: pool.BuffersPerPage()}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.close())
			r = nil
		}
	}()
	if r.src, err = pool.Alloc(maxKeys * r.ps); err != nil {
		return r, err
	}
	if r.dst, err = pool.Alloc(maxKeys * r.ps); err != nil {
		return r, err
	}
	if r.srcBufs, err = pool.PageBuffers(r.src); err != nil {
		return r, err
	}
	if r.dstBufs, err = pool.PageBuffers(r.dst); err != nil {
		return r, err
	}
	rng := rand.NewChaCha8([32]byte{'h', 'i', 'c', 'a', 'c', 'h', 'e'})
	for _, b := range r.srcBufs {
		_, _ = rng.Read(b)
	}
	for _, b := range r.dstBufs {
		clear(b) // fault the read slots in before anything is timed
	}
	scfg := p.storeConfig(dir)
	scfg.DirectIO = direct
	if r.store, err = hicachefile.New(scfg); err != nil {
		return r, err
	}
	if err = r.store.RegisterMemPoolHost(pool); err != nil {
		return r, err
	}
	return r, nil
}

// close removes the store's files and releases the store and the pool.
func (r *rig) close() error {
	var errs []error
	if r.store != nil {
		errs = append(errs, r.store.Clear(), r.store.Close())
	}
	errs = append(errs, r.pool.Close())
	return errors.Join(errs...)
}

// timing is one named duration of one sample.
type timing struct {
	name string
	d    time.Duration
}

// sample writes and reads back n pages with each side in sides, in an
// order that rotates with rot so no side always goes first, and checks
// every page read. tag makes the keys unique to this sample.
func (r *rig) sample(n int, tag string, rot int, sides []side) ([]timing, error) {
	r.serial++
	r.stamp(n)
	var out []timing
	for i := range sides {
		s := sides[(i+rot)%len(sides)]
		var w, rd time.Duration
		var err error
		switch s {
		case sideOld:
			w, rd, err = r.runOld(r.keys(tag, "old", n))
		case sideNew:
			w, rd, err = r.runNew(r.keys(tag, "new", n))
		case sideFloor:
			w, rd, err = r.runFloor(tag, n)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, timing{s.writeName(), w}, timing{s.readName(), rd})
	}
	return out, nil
}

func (s side) writeName() string {
	return [...]string{timeBatchSet, timeBatchSetV1, timePwrite}[s]
}

func (s side) readName() string {
	return [...]string{timeBatchGet, timeBatchGetV1, timePread}[s]
}

// stamp writes the sample serial and the buffer number into the first bytes
// of every buffer of the first n source pages, so that no page is the same
// in two samples and a stale page from an earlier sample fails the check.
func (r *rig) stamp(n int) {
	var tag [16]byte
	for i, b := range r.srcBufs[:n*r.perPage] {
		binary.LittleEndian.PutUint64(tag[:8], r.serial)
		binary.LittleEndian.PutUint64(tag[8:], uint64(i))
		copy(b, tag[:])
	}
}

// keys returns n distinct keys for one side of one sample, shaped like
// SGLang's: hex SHA-256 digests.
func (r *rig) keys(tag, side string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s/%s/%s/%d", r.p.name, tag, side, i))
		keys[i] = hex.EncodeToString(sum[:])
	}
	return keys
}

// prepare readies the store, the disk and the heap for a timed write: the
// directory holds none of this store's files, what the last timing left
// dirty (its pages, the removal of its files) is written back, and its
// garbage is collected, so that none of it is charged to the next timing.
func (r *rig) prepare() error {
	if err := r.store.Clear(); err != nil {
		return fmt.Errorf("perf: clear %s: %w", r.dir, err)
	}
	if err := syncFS(r.dir); err != nil {
		return err
	}
	runtime.GC()
	return nil
}

// flushForDirect writes back what the last timed write left dirty, in
// direct mode, so that the direct read that follows times the device alone:
// the kernel would otherwise write those pages back inside the read.
func (r *rig) flushForDirect() error {
	if !r.direct {
		return nil
	}
	return syncFS(r.dir)
}

// resetReads zeroes the first n read slots and collects garbage, before a
// timed read.
func (r *rig) resetReads(n int) {
	for _, b := range r.dstBufs[:n*r.perPage] {
		clear(b)
	}
	runtime.GC()
}

// runOld times what the cache controller does with the old interface: a
// GetDataPage copy per page then BatchSet; GetDummyFlatDataPage per page,
// BatchGet, then SetFromFlatDataPage per page.
func (r *rig) runOld(keys []string) (write, read time.Duration, err error) {
	if err := r.prepare(); err != nil {
		return 0, 0, err
	}
	if write, err = r.oldWrite(keys); err != nil {
		return 0, 0, err
	}
	r.resetReads(len(keys))
	if read, err = r.oldRead(keys); err != nil {
		return 0, 0, err
	}
	return write, read, r.verify("old interface", keys)
}

func (r *rig) oldWrite(keys []string) (time.Duration, error) {
	start := time.Now()
	values := make([][]byte, len(keys))
	for i := range values {
		var err error
		if values[i], err = r.pool.GetDataPage(r.src[i*r.ps]); err != nil {
			return 0, fmt.Errorf("perf: GetDataPage: %w", err)
		}
	}
	ok, err := r.store.BatchSet(keys, values)
	d := time.Since(start)
	return d, allTrue("BatchSet", ok, len(keys), err)
}

func (r *rig) oldRead(keys []string) (time.Duration, error) {
	start := time.Now()
	dsts := make([][]byte, len(keys))
	for i := range dsts {
		dsts[i] = r.pool.GetDummyFlatDataPage()
	}
	ok, err := r.store.BatchGet(keys, dsts)
	var setErr error
	for i, hit := range ok {
		if hit && setErr == nil {
			setErr = r.pool.SetFromFlatDataPage(r.dst[i*r.ps], dsts[i])
		}
	}
	d := time.Since(start)
	if err := allTrue("BatchGet", ok, len(keys), err); err != nil {
		return 0, err
	}
	if setErr != nil {
		return 0, fmt.Errorf("perf: SetFromFlatDataPage: %w", setErr)
	}
	return d, nil
}

// runNew times the zero-copy interface: BatchSetV1 from the source slots,
// BatchGetV1 into the read slots.
func (r *rig) runNew(keys []string) (write, read time.Duration, err error) {
	n := len(keys)
	if err := r.prepare(); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	ok, err := r.store.BatchSetV1(keys, r.src[:n*r.ps])
	write = time.Since(start)
	if err := allTrue("BatchSetV1", ok, n, err); err != nil {
		return 0, 0, err
	}

	if err := r.flushForDirect(); err != nil {
		return 0, 0, err
	}
	r.resetReads(n)
	before := r.store.Stats()
	start = time.Now()
	ok, err = r.store.BatchGetV1(keys, r.dst[:n*r.ps])
	read = time.Since(start)
	if err := allTrue("BatchGetV1", ok, n, err); err != nil {
		return 0, 0, err
	}
	after := r.store.Stats()
	r.reads.v1 += after.GetBytes - before.GetBytes
	r.reads.v1Direct += after.DirectBytes - before.DirectBytes
	return write, read, r.verify("new interface", keys)
}

// runFloor times the floor: plain pwrite of each page's buffers straight
// from the pool into a new file per page in the same directory, and pread
// back into the read slots. No copy, no temp file, no rename, no index. In
// direct mode the pread is O_DIRECT where it can be (see readFloorPage).
func (r *rig) runFloor(tag string, n int) (write, read time.Duration, err error) {
	if err := r.prepare(); err != nil {
		return 0, 0, err
	}
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(r.dir, fmt.Sprintf("perf-floor-%s-%s-%d.page", r.p.name, tag, i))
	}
	defer func() {
		for _, p := range paths {
			if rmErr := os.Remove(p); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
				err = errors.Join(err, rmErr)
			}
		}
	}()

	start := time.Now()
	for i, p := range paths {
		if err := writePage(p, r.srcBufs[i*r.perPage:(i+1)*r.perPage]); err != nil {
			return 0, 0, err
		}
	}
	write = time.Since(start)

	if err := r.flushForDirect(); err != nil {
		return 0, 0, err
	}
	r.resetReads(n)
	start = time.Now()
	for i, p := range paths {
		if err := r.readFloorPage(p, r.dstBufs[i*r.perPage:(i+1)*r.perPage]); err != nil {
			return 0, 0, err
		}
	}
	read = time.Since(start)
	return write, read, r.verify("floor", paths)
}

// writePage creates path and pwrites bufs back to back into it.
func writePage(path string, bufs [][]byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("perf: floor: %w", err)
	}
	var off int64
	for _, b := range bufs {
		if _, err := f.WriteAt(b, off); err != nil {
			_ = f.Close()
			return fmt.Errorf("perf: floor: pwrite %s: %w", path, err)
		}
		off += int64(len(b))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("perf: floor: %w", err)
	}
	return nil
}

// readFloorPage reads one floor page into bufs: with O_DIRECT in direct
// mode where the file system and the buffers allow it, else, and always
// without -perf-direct, through the page cache. It counts the bytes.
func (r *rig) readFloorPage(path string, bufs [][]byte) error {
	var n int64
	for _, b := range bufs {
		n += int64(len(b))
	}
	r.reads.floor += n
	if r.direct {
		direct, why, err := readPageDirect(path, bufs)
		if err != nil {
			return err
		}
		if direct {
			r.reads.floorDirect += n
			return nil
		}
		r.floorWhy = why
	}
	return readPage(path, bufs)
}

// readPage preads path back to back into bufs.
func readPage(path string, bufs [][]byte) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("perf: floor: %w", err)
	}
	defer f.Close()
	var off int64
	for _, b := range bufs {
		if _, err := f.ReadAt(b, off); err != nil {
			return fmt.Errorf("perf: floor: pread %s: %w", path, err)
		}
		off += int64(len(b))
	}
	return nil
}

// allTrue checks a batch call's result: no error and every key true.
func allTrue(op string, ok []bool, n int, err error) error {
	if err != nil {
		return fmt.Errorf("perf: %s: %w", op, err)
	}
	if len(ok) != n {
		return fmt.Errorf("perf: %s returned %d results for %d keys", op, len(ok), n)
	}
	for i, v := range ok {
		if !v {
			return fmt.Errorf("perf: %s: key %d of %d failed", op, i, n)
		}
	}
	return nil
}

// verify compares the first len(names) read slots with the source pages,
// buffer by buffer, and names the first page that differs.
func (r *rig) verify(what string, names []string) error {
	for i, name := range names {
		for j := range r.perPage {
			want, got := r.srcBufs[i*r.perPage+j], r.dstBufs[i*r.perPage+j]
			if !bytes.Equal(want, got) {
				at := 0
				for at < len(want) && want[at] == got[at] {
					at++
				}
				return fmt.Errorf("perf: %s: page %d (%s) came back wrong: buffer %d of %d differs from what was written at byte %d of %d",
					what, i, name, j, r.perPage, at, len(want))
			}
		}
	}
	return nil
}
