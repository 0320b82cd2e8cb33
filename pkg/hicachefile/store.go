package hicachefile

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// Store is a HiCacheFile storage backend: pages as files in one directory,
// through SGLang's per-key copy interface (Set, Get, BatchSet, BatchGet) and
// a batched zero-copy interface against a registered host pool (BatchSetV1,
// BatchGetV1).
//
// A Store is safe for concurrent use by multiple goroutines, and several
// processes may share one directory. Close waits for calls in progress.
type Store struct {
	cfg     Config
	suffix  string
	dir     string   // Config.Dir
	v1Dir   string   // dir/v1<suffix>
	workers int      // Config.IOWorkers
	sys     Syscalls // Config.Syscalls, nil fields filled in

	life  sync.RWMutex // held shared by every call, exclusively by Close
	close bool         // guarded by life
	dirfd int          // Dir, open for *at calls
	// v1 holds the descriptor of v1Dir, open for *at calls. checkDir swaps
	// it when the directory was removed or replaced under the store; the
	// old descriptor stays open in retired (guarded by scan.mu) until
	// Close, so that a call still using it never reaches a reused number.
	v1      atomic.Int64
	retired []int

	// watch follows the V1 directory (nil when inotify is unavailable),
	// guarded by scan.mu. poll makes a miss compare the directory's mtime
	// (when there is no watch, or on a network file system).
	watch *watcher
	poll  atomic.Bool

	pool atomic.Pointer[poolInfo]
	idx  *index.Index // which batch file holds which key
	scan scanState    // what the listings of the V1 directory found
	// commitMu is held shared from a write's rename to its index add, and
	// exclusively by Clear, so that Clear never leaves a file it removed
	// in the index.
	commitMu sync.RWMutex
	// inflight holds the names of batch files this store is renaming into
	// place and adding to the index. applyEvents marks one whose removal
	// (another process's Clear) it sees before the add, and the commit then
	// forgets it, so that no removed file stays in the index; that takes no
	// stat after the rename.
	inflight struct {
		mu    sync.Mutex
		names map[string]bool
	}
	lru   lru
	stats counters
}

// poolInfo is what the V1 interface needs of the registered pool.
type poolInfo struct {
	pool    *hostcache.Pool
	ps      int    // tokens per page
	pageLen int64  // bytes of one page: the sum of its buffers
	bpp     int    // buffers per page
	pages   int    // pages in the pool
	fp      uint64 // fingerprint written into and checked against batch files
}

// New opens the store described by cfg, creating its directory if missing,
// and indexes the batch files this store's suffix already has there.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{cfg: cfg, suffix: cfg.suffix(), dir: cfg.Dir, workers: cfg.IOWorkers, sys: cfg.Syscalls.withDefaults(), dirfd: -1}
	s.v1Dir = filepath.Join(s.dir, v1DirName+s.suffix)
	s.idx = index.New()
	s.inflight.names = make(map[string]bool)
	s.scan.pending = make(map[string]bool)
	var err error
	if s.dirfd, err = openDir(s.dir); err != nil {
		return nil, err
	}
	v1fd, err := openDir(s.v1Dir)
	if err != nil {
		_ = unix.Close(s.dirfd)
		return nil, err
	}
	s.v1.Store(int64(v1fd))
	if cfg.Sync {
		// Make the directories themselves durable, in case New made them.
		if err := syncDirs(filepath.Dir(s.dir), s.dirfd); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	if cfg.MaxBytes > 0 {
		s.lru.init()
		if err := s.trackOldFiles(); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	// Watch before the first listing, so that no change falls between.
	if !cfg.NoWatch {
		s.watch, _ = newWatcher(s.v1Dir) // without it, the store polls
	}
	s.poll.Store(s.watch == nil || isNetworkFS(s.v1fd()))
	s.refresh(false)
	return s, nil
}

// openDir creates path if missing and opens it for *at system calls.
func openDir(path string) (int, error) {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return -1, fmt.Errorf("hicachefile: %w", err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("hicachefile: open directory %s: %w", path, err)
	}
	return fd, nil
}

// Close releases the store's directory handles. Files stay on disk. Every
// later call returns ErrClosed, or false results.
func (s *Store) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.close {
		return ErrClosed
	}
	s.close = true
	var werr error
	if s.watch != nil {
		werr = s.watch.close()
	}
	errs := []error{closeFD(s.dirfd, s.dir), closeFD(s.v1fd(), s.v1Dir), werr}
	for _, fd := range s.retired {
		errs = append(errs, closeFD(fd, s.v1Dir+" (retired)"))
	}
	return errors.Join(errs...)
}

// syncDirs fsyncs the directory at path and the one open at fd.
func syncDirs(path string, fd int) error {
	pfd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("hicachefile: open directory %s: %w", path, err)
	}
	defer unix.Close(pfd)
	if err := unix.Fsync(pfd); err != nil {
		return fmt.Errorf("hicachefile: fsync %s: %w", path, err)
	}
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("hicachefile: fsync directory: %w", err)
	}
	return nil
}

// closeFD closes a raw descriptor, naming path in the error.
func closeFD(fd int, path string) error {
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("hicachefile: close %s: %w", path, err)
	}
	return nil
}

// enter marks a call in progress; it fails once the store is closed. Pair
// with s.life.RUnlock.
func (s *Store) enter() error {
	s.life.RLock()
	if s.close {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

// v1fd returns the descriptor of the V1 directory.
func (s *Store) v1fd() int { return int(s.v1.Load()) }

// RegisterMemPoolHost sets the host pool the V1 interface moves pages to and
// from. It may be called again to switch pools; calls already running keep
// the pool they started with. After Close it returns ErrClosed.
func (s *Store) RegisterMemPoolHost(p *hostcache.Pool) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if p == nil {
		return fmt.Errorf("%w: nil pool", ErrNoPool)
	}
	cfg := p.Config()
	first := make([]int64, cfg.PageSize)
	for i := range first {
		first[i] = int64(i)
	}
	_, sizes, err := p.GetPageBufferMeta(first)
	if err != nil {
		return fmt.Errorf("hicachefile: register pool: %w", err)
	}
	// The fingerprint names everything that gives a page's bytes their
	// meaning, so that a page never loads into a pool that reads it
	// differently, even when the byte counts agree (float16 vs bfloat16).
	if cfg.Kind == hostcache.MLA {
		cfg.HeadNum, cfg.HeadDim = 0, 0 // ignored by the pool, so not part of the shape
	} else {
		cfg.KVLoraRank, cfg.QKRopeHeadDim = 0, 0
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "hicache-v1 kind=%s dtype=%s layout=%s ps=%d layers=%d heads=%d headdim=%d lora=%d rope=%d bufs=%v",
		cfg.Kind, cfg.DType, cfg.Layout, cfg.PageSize, cfg.LayerNum, cfg.HeadNum, cfg.HeadDim, cfg.KVLoraRank, cfg.QKRopeHeadDim, sizes)
	s.pool.Store(&poolInfo{pool: p, ps: cfg.PageSize, pageLen: int64(p.PageBytes()), bpp: len(sizes), pages: cfg.Pages, fp: h.Sum64()})
	return nil
}

// Stats is a snapshot of a store's counters since New.
type Stats struct {
	Sets     int64 // pages written, by either interface
	SetBytes int64 // bytes of the pages written
	Existed  int64 // pages not written because the key already existed
	Gets     int64 // pages asked for, by either interface
	GetBytes int64 // bytes of the pages served
	Hits     int64 // pages served
	Misses   int64 // pages not served: missing, corrupt, mismatched or failed
	Corrupt  int64 // pages that failed a size or CRC32C check
	Mismatch int64 // V1 pages written by a pool of another shape or dtype
	// SkippedFiles counts batch files whose trailer or index failed its
	// checks; none of their pages is served.
	SkippedFiles int64
	Errors       int64 // I/O errors other than a missing file
	// SpecialFiles counts the times a store name was found held by a FIFO,
	// socket, device, directory or symlink: a miss. Such a file is opened
	// only with O_NONBLOCK|O_NOFOLLOW, if at all, and never read.
	SpecialFiles int64
	// DirectBytes counts the bytes BatchGetV1 read with O_DIRECT (see
	// Config.DirectIO).
	DirectBytes int64
	// Evicted and EvictedBytes count the files removed to keep within
	// Config.MaxBytes; EvictErrors counts the files that could not be
	// removed and were passed over.
	Evicted, EvictedBytes, EvictErrors int64
	// Listings counts full listings of the V1 directory: one when the store
	// opens, then after Clear, after lost inotify events, after the
	// directory was replaced under the store, and, when polling, after a
	// miss in a changed directory.
	Listings int64
}

// counters are the live Stats.
type counters struct {
	sets, setBytes, existed, gets, getBytes, hits, misses atomic.Int64
	corrupt, mismatch, skippedFiles, errors, listings     atomic.Int64
	directBytes, evicted, evictedBytes, evictErrors       atomic.Int64
	specialFiles                                          atomic.Int64
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() Stats {
	c := &s.stats
	return Stats{
		Sets: c.sets.Load(), SetBytes: c.setBytes.Load(), Existed: c.existed.Load(),
		Gets: c.gets.Load(), GetBytes: c.getBytes.Load(), Hits: c.hits.Load(), Misses: c.misses.Load(),
		Corrupt: c.corrupt.Load(), Mismatch: c.mismatch.Load(), SkippedFiles: c.skippedFiles.Load(),
		Errors: c.errors.Load(), Listings: c.listings.Load(), DirectBytes: c.directBytes.Load(),
		Evicted: c.evicted.Load(), EvictedBytes: c.evictedBytes.Load(), EvictErrors: c.evictErrors.Load(),
		SpecialFiles: c.specialFiles.Load(),
	}
}

// Dir returns the directory the store keeps its files in.
func (s *Store) Dir() string { return s.dir }

// FilePath returns the path of key's old-format file, whether or not it
// exists.
func (s *Store) FilePath(key string) string { return filepath.Join(s.dir, s.oldName(key)) }
