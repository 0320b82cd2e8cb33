//go:build linux

package hicachefile

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/lru"
)

// loaded is the outcome of reading one batch file's index. The keys of a
// file whose index passed its checks go straight into the index (see
// load), so only its name, size and mtime stay here.
type loaded struct {
	name  string
	err   error
	size  int64 // file size and mtime (Unix ns), for eviction
	mtime int64
}

// loadedSet is what load leaves for merge: the files it read, and the ones
// of them that failed.
type loadedSet struct {
	names []string
	fails []loaded
}

// load reads the indexes of the batch files names, on the store's IO
// workers (at a cold start, most of the time goes to waiting for the
// disk), and adds those that pass their checks to the index (see loader).
// It returns what merge must still settle. A name given twice is read
// once. The caller holds s.scan.mu and passes the result to merge.
func (s *Store) load(names []string) *loadedSet {
	if len(names) > 1 {
		names = dedupe(names)
	}
	if len(names) <= loadPerWorker {
		// A few files (inotify's news): on this goroutine.
		var lw loadWorker
		s.loadChunk(names, &lw)
		return &loadedSet{names: names, fails: lw.fails}
	}
	l := s.newLoader()
	l.add(names)
	return &loadedSet{names: names, fails: l.wait()}
}

// dedupe returns names without repeats, in the order of their first
// occurrence.
func dedupe(names []string) []string {
	seen := make(map[string]bool, len(names))
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// loadChunkMax bounds the files a load worker reads before it adds them to
// the index: a chunk takes each of the index's locks once.
const loadChunkMax = 256

// loadPerWorker is how many files justify one more load worker.
const loadPerWorker = 64

// loader reads batch files' indexes on up to s.workers goroutines, started
// as names come (a listing hands them over a getdents buffer at a time, so
// that the workers read while it lists), and adds each chunk of files that
// pass their checks to the index at once (index.AddBatch): the index does
// not wait for the last file, and a worker adds while others read.
type loader struct {
	s       *Store
	ch      chan []string
	wg      sync.WaitGroup
	ws      []loadWorker
	names   int // names handed over so far
	started int
}

// loadWorker is one load worker's reusable memory, and the files it could
// not load.
type loadWorker struct {
	buf   []byte
	iov   [1][]byte // the read of buf, without a slice made per read
	keys  index.Batch
	fails []loaded
	ahead []aheadFile // files being read ahead (loadChunk)
	found []loaded    // files of the chunk for the eviction order
}

// newLoader returns a loader with no worker started yet.
func (s *Store) newLoader() *loader {
	w := max(1, s.workers)
	return &loader{s: s, ch: make(chan []string, 8*w), ws: make([]loadWorker, w)}
}

// add hands names over to the workers, in chunks, starting workers as the
// names handed over justify them.
func (l *loader) add(names []string) {
	if len(names) == 0 {
		return
	}
	l.names += len(names)
	// Chunks small enough that every worker gets several, so that one
	// slow file (a cold disk) leaves no worker idle for long.
	chunk := min(loadChunkMax, max(16, len(names)/(len(l.ws)*8)))
	for len(names) > 0 {
		c := names[:min(chunk, len(names))]
		names = names[len(c):]
		if l.started < min(len(l.ws), (l.names+loadPerWorker-1)/loadPerWorker) {
			lw := &l.ws[l.started]
			l.started++
			l.wg.Go(func() {
				for c := range l.ch {
					l.s.loadChunk(c, lw)
				}
			})
		}
		l.ch <- c
	}
}

// wait waits for the workers to load every name handed over, and returns
// the files that failed.
func (l *loader) wait() []loaded {
	close(l.ch)
	l.wg.Wait()
	var fails []loaded
	for _, lw := range l.ws {
		fails = append(fails, lw.fails...)
	}
	return fails
}

// loadChunk reads the indexes of the batch files names and adds the files
// whose index passed its checks to the index, at once. A file whose index
// is not in the page cache (a cold start) is not waited for: the kernel is
// asked to read it (readahead) while the worker goes on with the next
// files, up to maxAhead of them, so that each worker keeps several disk
// reads in flight instead of one.
func (s *Store) loadChunk(names []string, lw *loadWorker) {
	lw.keys.Reset()
	nowait := s.cfg.Syscalls.Preadv == nil && !s.noNowait.Load() // not through a test's seam
	for _, name := range names {
		f, fd, st := s.openIndex(name)
		if fd < 0 && isFDLimit(f.err) && len(lw.ahead) > 0 {
			// The descriptors this worker holds may be the ones missing.
			s.finishAhead(lw)
			f, fd, st = s.openIndex(name)
		}
		if fd >= 0 {
			if !s.readIndex(&f, fd, &st, lw, nowait) {
				tail := min(st.Size, loadTail)
				_ = unix.Fadvise(fd, st.Size-tail, tail, unix.FADV_WILLNEED)
				lw.ahead = append(lw.ahead, aheadFile{f: f, fd: fd, st: st})
				if len(lw.ahead) == maxAhead {
					s.finishAhead(lw)
				}
				continue
			}
			_ = s.sys.Close(fd)
		}
		lw.settle(s, f)
	}
	s.finishAhead(lw)
	s.idx.AddBatch(&lw.keys)
	// Files join the eviction order once their keys are in the index, so
	// that an eviction that picks one forgets its keys too.
	for _, f := range lw.found {
		s.lru.Track(lru.ID{Name: f.name}, f.size, f.mtime)
	}
	clear(lw.found)
	lw.found = lw.found[:0]
}

// maxAhead bounds the files a load worker holds open while the kernel reads
// their indexes ahead: the disk reads it keeps in flight.
const maxAhead = 16

// aheadFile is a file a load worker has asked the kernel to read ahead:
// open, and checked a regular file.
type aheadFile struct {
	f  loaded
	fd int
	st unix.Stat_t
}

// finishAhead reads the indexes of the files lw asked the kernel to read
// ahead, waiting for the disk now, and closes them.
func (s *Store) finishAhead(lw *loadWorker) {
	for i := range lw.ahead {
		a := &lw.ahead[i]
		s.readIndex(&a.f, a.fd, &a.st, lw, false)
		_ = s.sys.Close(a.fd)
		lw.settle(s, a.f)
	}
	clear(lw.ahead)
	lw.ahead = lw.ahead[:0]
}

// settle records the outcome of loading a file: a file whose index passed
// its checks is to join the eviction order as used at its mtime, and one
// that failed is kept for merge.
func (lw *loadWorker) settle(s *Store, f loaded) {
	if s.lru.On() && f.err == nil {
		lw.found = append(lw.found, f)
	}
	if f.err != nil {
		lw.fails = append(lw.fails, f)
	}
}

// merge settles what load left: a file that failed its checks is
// remembered as skipped (known to the index, with no key), so it is not
// read again; one that could not be read for another reason (EMFILE, EIO)
// is retried at a later miss; one that is gone is forgotten. The caller
// holds s.scan.mu.
func (s *Store) merge(set *loadedSet) {
	x := &s.scan
	if len(x.pending) > 0 {
		for _, n := range set.names {
			delete(x.pending, n)
		}
	}
	var empty index.Batch // files known to hold nothing
	for _, f := range set.fails {
		switch {
		case errors.Is(f.err, errNotRegular):
			empty.EndFile(f.name, index.Meta{}) // counted in Stats.SpecialFiles; never read
		case errors.Is(f.err, ErrCorrupt):
			// It takes space too: it joins the eviction order as the
			// files that loaded did.
			s.lru.Track(lru.ID{Name: f.name}, f.size, f.mtime)
			empty.EndFile(f.name, index.Meta{})
			s.stats.skippedFiles.Add(1)
		case errors.Is(f.err, os.ErrNotExist):
			s.idx.Forget(f.name)
		default:
			s.idx.Forget(f.name)
			x.pending[f.name] = true
			s.stats.errors.Add(1)
			if isFDLimit(f.err) {
				x.fdErr = f.err
			}
		}
	}
	s.idx.AddBatch(&empty)
	if len(x.pending) == 0 {
		x.fdErr = nil
	}
}

// loadTail is how many bytes at the end of a batch file readIndex reads at
// once: the trailer, the identity and, for files of up to about 180 pages
// with SGLang's 64-byte keys (a batch is 128), the whole index, in one
// system call.
const loadTail = 16 << 10

// openIndex opens the batch file name to read its index, and returns its
// descriptor and fstat, or -1 and f.err. The size and mtime it sets in f
// come from that fstat: they are set whenever the file could be opened,
// corrupt or not.
func (s *Store) openIndex(name string) (f loaded, fd int, st unix.Stat_t) {
	f.name = name
	fd, st, err := s.openRegular(s.v1fd(), s.v1Dir, name)
	if err != nil {
		if err == unix.ENOENT {
			err = &os.PathError{Op: "open", Path: filepath.Join(s.v1Dir, name), Err: err}
		}
		f.err = err
		return f, -1, st
	}
	f.size, f.mtime = st.Size, st.Mtim.Nano()
	return f, fd, st
}

// readIndex reads and checks the trailer and index of the batch file f,
// open at fd, whose fstat is st, and when they pass, adds the digests of
// its keys and the offsets of their entries to lw.keys and ends the file
// there (index.Batch.EndFile); it sets f.err when they fail. With nowait,
// it reports false, having done nothing, when the
// file's last loadTail bytes are not all in the page cache: its first read
// does not wait for the disk (preadv2 with RWF_NOWAIT). A file system
// without RWF_NOWAIT (tmpfs) turns nowait off for the store.
func (s *Store) readIndex(f *loaded, fd int, st *unix.Stat_t, lw *loadWorker, nowait bool) bool {
	name := f.name
	if st.Size < trailerSize {
		f.err = fmt.Errorf("%w: %s is %d bytes, shorter than a trailer", ErrCorrupt, name, st.Size)
		return true
	}
	tail := min(st.Size, loadTail)
	if int64(cap(lw.buf)) < tail {
		lw.buf = make([]byte, tail)
	}
	b := lw.buf[:tail]
	cached := false
	if nowait {
		n, err := preadNowait(fd, b, st.Size-tail)
		switch {
		case err == nil && n == len(b):
			cached = true
		case err == nil && n > 0, err == unix.EAGAIN, err == unix.EINTR:
			return false // not all cached: read it after the kernel has
		case err == unix.EOPNOTSUPP, err == unix.EINVAL, err == unix.ENOSYS:
			s.noNowait.Store(true)
		}
		// Anything else (a file cut short since its fstat, EIO): the read
		// below, through the seam, tells.
	}
	if !cached {
		lw.iov[0] = b
		err := s.sys.preadv(fd, lw.iov[:], st.Size-tail)
		lw.iov[0] = nil
		if err != nil {
			f.err = fmt.Errorf("hicachefile: read trailer of %s: %w", name, err)
			return true
		}
	}
	t, err := batchfile.ParseTrailer(b[tail-trailerSize:], st.Size)
	if err != nil {
		f.err = fmt.Errorf("%s: %w", name, err)
		return true
	}
	// The index and the identity after it: in the tail already read, or
	// in one read more.
	var ib []byte
	if start := t.IndexOff - (st.Size - tail); start >= 0 {
		ib = b[start : tail-trailerSize]
	} else {
		ib = make([]byte, t.IndexLen+t.IdentLen)
		lw.iov[0] = ib
		err := s.sys.preadv(fd, lw.iov[:], t.IndexOff)
		lw.iov[0] = nil
		if err != nil {
			f.err = fmt.Errorf("hicachefile: read index of %s: %w", name, err)
			return true
		}
	}
	identKey, err := s.identityKey(ib[t.IndexLen:], t)
	if err != nil {
		f.err = fmt.Errorf("%s: %w", name, err)
		return true
	}
	keys := &lw.keys
	pageLen := int64(-1)
	err = batchfile.WalkIndex(ib[:t.IndexLen], t, func(key []byte, off, length int64, _ uint32, ent uint32) {
		keys.Key(s.idx.HashBytes(key), ent, uint32(min(off/length, math.MaxUint32)))
		if pageLen == -1 {
			pageLen = length
		} else if pageLen != length || off/length > math.MaxUint32 {
			pageLen = 0 // mixed lengths: no pool loads such a file
		}
	})
	if err != nil {
		f.err = fmt.Errorf("%s: %w", name, err)
		keys.Discard()
		return true
	}
	// A page is served only to a store whose pool and identity match.
	keys.EndFile(name, index.Meta{FP: matchKey(t.FP, identKey), IndexOff: t.IndexOff, PageLen: pageLen, Tag: batchfile.Tag(b), Ino: st.Ino, Size: st.Size})
	return true
}

// identityKey checks the identity b of a file whose trailer is t, as
// parseIdentity does, and returns its key (identity.key). The store's own
// identity, which nearly every file it reads carries, is known by its
// bytes: it costs a checksum, and no parsing.
func (s *Store) identityKey(b []byte, t trailer) (uint64, error) {
	if bytes.Equal(b, s.ident) && crc32.Checksum(b, castagnoli) == t.IdentCRC {
		return s.identKey, nil
	}
	id, err := parseIdentity(b, t)
	if err != nil {
		return 0, err
	}
	return id.key(), nil
}

// preadNowait reads into b from fd at off with preadv2(RWF_NOWAIT): it
// returns EAGAIN, or fewer bytes, rather than wait for the disk. It is
// not a Syscalls seam: loadChunk uses it only with the real Preadv.
func preadNowait(fd int, b []byte, off int64) (int, error) {
	iov := unix.Iovec{Base: unsafe.SliceData(b)}
	iov.SetLen(len(b))
	lo, hi := offsetWords(off)
	r, _, errno := unix.Syscall6(unix.SYS_PREADV2, uintptr(fd), uintptr(unsafe.Pointer(&iov)), 1, lo, hi, unix.RWF_NOWAIT)
	runtime.KeepAlive(b)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
