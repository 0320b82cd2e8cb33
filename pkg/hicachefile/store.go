//go:build linux

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

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/dirwatch"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/lru"
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
	names            // the names of its files
	dir     string   // Config.Dir
	v1Dir   string   // dir/v1-<digest><suffix>
	workers int      // Config.IOWorkers
	sys     Syscalls // Config.Syscalls, nil fields filled in
	// ident is the store's identity as written into its batch files, and
	// identKey the hash a file's identity must match (identity.key).
	ident    []byte
	identKey uint64

	life  sync.RWMutex // held shared by every call, exclusively by Close
	close bool         // guarded by life
	// top and v1 hold the descriptors of Dir and v1Dir, open for *at
	// calls, and topID and v1ID (guarded by scan.mu) the directories they
	// are. checkDir swaps them when a directory was removed or replaced
	// under the store. A swapped-out descriptor is retired: it stays open
	// until no call is in progress (calls counts them), so that a call
	// still using it never reaches a reused number, and is then closed.
	top, v1      atomic.Int64
	topID, v1ID  dirID
	calls        atomic.Int64
	rmu          sync.Mutex // guards retired
	retired      []int
	retiredCount atomic.Int64 // len(retired), read without rmu

	// watch follows the V1 directory (nil when inotify is unavailable),
	// guarded by scan.mu. poll makes a miss compare the directory's mtime
	// (when there is no watch, or on a network file system).
	watch *dirwatch.Watcher
	poll  atomic.Bool
	// tmpfile (a tmpfile value) says whether writes make their temp files
	// with O_TMPFILE: not known until the first write, and off for good
	// once the file system refuses it.
	tmpfile atomic.Int32
	// noEmptyPath says that linkat with AT_EMPTY_PATH was refused (Linux
	// before 6.10, without CAP_DAC_READ_SEARCH): links of files made with
	// O_TMPFILE go through /proc/self/fd.
	noEmptyPath atomic.Bool
	// noNowait says that reads with RWF_NOWAIT are refused (tmpfs): a
	// load reads every index waiting for the disk.
	noNowait atomic.Bool
	// dirsMoved, guarded by scan.mu, says that the watcher saw Dir or the
	// V1 directory go: the next refresh or write runs checkDir.
	dirsMoved bool
	// dirCheck says that a read found an indexed batch file gone from the
	// path: the next refresh runs checkDir, watcher or not.
	dirCheck atomic.Bool

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
		// own holds the names of unnamed files this store links: true
		// while the watcher has not read the link's creation event
		// (expectOwn), false once it has and the commit is still in
		// flight (takeOwn).
		own map[string]bool
	}
	lru lru.LRU
	// maxBytes is the bound in effect: Config.MaxBytes clamped to the file
	// system (clampMaxBytes).
	maxBytes atomic.Int64
	// components holds the stores of the component pools registered with
	// RegisterPool, by pool name (v2.go).
	components componentStores
	// parent is the store that registered this one as a component pool's
	// store (nil for a store from New): they share one MaxBytes.
	parent *Store
	stats  counters
}

// poolInfo is what the V1 interface needs of the registered pool.
type poolInfo struct {
	pool    *hostcache.Pool
	ps      int    // tokens per page
	pageLen int64  // bytes of one page: the sum of its buffers
	bpp     int    // buffers per page
	pages   int    // pages in the pool
	poolFP  uint64 // fingerprint of the pool, written into batch files
	// fp is what the index compares: poolFP combined with the store's
	// identity (matchKey), so that only pages written by a pool like this
	// one and by a store of the same identity are served.
	fp uint64
}

// New opens the store described by cfg, creating its directory if missing,
// and indexes the batch files this store's suffix already has there.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{cfg: cfg, names: names{suffix: cfg.suffix(), digest: cfg.identityDigest()}, dir: cfg.Dir, workers: cfg.IOWorkers,
		sys: cfg.Syscalls.withDefaults()}
	s.v1Dir = filepath.Join(s.dir, s.v1DirName())
	id := identityOf(cfg)
	s.ident, s.identKey = appendIdentity(nil, id), id.key()
	s.idx = index.New()
	s.inflight.names = make(map[string]bool)
	s.inflight.own = make(map[string]bool)
	s.scan.pending = make(map[string]bool)
	topfd, topID, err := openDir(s.dir)
	if err != nil {
		return nil, err
	}
	v1fd, v1ID, err := openDir(s.v1Dir)
	if err != nil {
		_ = unix.Close(topfd)
		return nil, err
	}
	s.top.Store(int64(topfd))
	s.v1.Store(int64(v1fd))
	s.topID, s.v1ID = topID, v1ID
	s.adoptLegacy()
	if cfg.Sync {
		// Make the directories themselves durable, in case New made them.
		if err := syncDirs(filepath.Dir(s.dir), topfd); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	s.clampMaxBytes()
	if cfg.evicting() && cfg.owner() {
		s.lru.Init()
		if err := s.trackOldFiles(); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	// Watch before the first listing, so that no change falls between.
	if !cfg.NoWatch {
		s.watch, _ = dirwatch.New(s.v1Dir, s.dir) // without it, the store polls
	}
	s.poll.Store(s.watch == nil || dirwatch.IsNetworkFS(s.v1fd()))
	// One listing of the V1 directory serves both the reclaim and the
	// index. Temp files left by writers that died (SIGKILL, a crash, a
	// power cut) go now; live writers' stay. A failure only leaves them.
	s.scan.mu.Lock()
	others := []string{} // the V1 directory's names that are not batch files
	if !s.listDir(func(n string) { others = append(others, n) }) {
		others = nil // reclaimTempsIn lists it again
	}
	s.scan.mu.Unlock()
	_ = s.reclaimTempsIn(others)
	s.refresh(false) // lists here if that listing failed
	return s, nil
}

// dirID tells one directory from another: a directory replaced at the same
// path has another inode.
type dirID struct{ dev, ino uint64 }

// openDir creates path if missing and opens it for *at system calls.
func openDir(path string) (int, dirID, error) {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return -1, dirID{}, fmt.Errorf("hicachefile: %w", err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, dirID{}, fmt.Errorf("hicachefile: open directory %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return -1, dirID{}, fmt.Errorf("hicachefile: fstat %s: %w", path, err)
	}
	return fd, dirID{st.Dev, st.Ino}, nil
}

// isAt reports whether the directory now at path is id.
func (id dirID) isAt(path string) bool {
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil && st.Dev == id.dev && st.Ino == id.ino
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
		werr = s.watch.Close()
	}
	errs := []error{closeFD(s.topfd(), s.dir), closeFD(s.v1fd(), s.v1Dir), werr, s.closeComponents()}
	for _, fd := range s.retired {
		errs = append(errs, closeFD(fd, s.dir+" (retired)"))
	}
	s.retired = nil
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
// with s.leave.
func (s *Store) enter() error {
	s.life.RLock()
	if s.close {
		s.life.RUnlock()
		return ErrClosed
	}
	s.calls.Add(1)
	return nil
}

// tryEnter begins a call as enter does, without waiting: false when the
// store is closed or a Close holds it.
func (s *Store) tryEnter() bool {
	if !s.life.TryRLock() {
		return false
	}
	if s.close {
		s.life.RUnlock()
		return false
	}
	s.calls.Add(1)
	return true
}

// leave ends a call that enter began. The last call to leave closes the
// descriptors retired meanwhile.
func (s *Store) leave() {
	if s.calls.Add(-1) == 0 && s.retiredCount.Load() > 0 {
		s.reap()
	}
	s.life.RUnlock()
}

// retire hands over a directory descriptor that checkDir swapped out: it
// is closed once no call is in progress.
func (s *Store) retire(fd int) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.retired = append(s.retired, fd)
	s.retiredCount.Store(int64(len(s.retired)))
}

// reap closes the retired descriptors if no call is in progress. A call
// that read a descriptor before it was swapped out entered before, so it
// still counts in s.calls; a call that entered since reads the new one.
func (s *Store) reap() {
	s.rmu.Lock()
	if s.calls.Load() != 0 {
		s.rmu.Unlock()
		return
	}
	fds := s.retired
	s.retired = nil
	s.retiredCount.Store(0)
	s.rmu.Unlock()
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

// topfd returns the descriptor of Dir.
func (s *Store) topfd() int { return int(s.top.Load()) }

// v1fd returns the descriptor of the V1 directory.
func (s *Store) v1fd() int { return int(s.v1.Load()) }

// RegisterMemPoolHost sets the host pool the V1 interface moves pages to and
// from. It may be called again to switch pools; calls already running keep
// the pool they started with. After Close it returns ErrClosed.
func (s *Store) RegisterMemPoolHost(p *hostcache.Pool) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
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
	switch cfg.Kind {
	case hostcache.MLA:
		cfg.HeadNum, cfg.HeadDim = 0, 0 // ignored by the pool, so not part of the shape
	case hostcache.Component:
		cfg.HeadNum, cfg.HeadDim, cfg.LayerNum, cfg.KVLoraRank, cfg.QKRopeHeadDim = 0, 0, 0, 0, 0
		cfg.Layout = hostcache.PageFirst // page_first_direct lays a component page out the same
	default:
		cfg.KVLoraRank, cfg.QKRopeHeadDim = 0, 0
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "hicache-v1 kind=%s dtype=%s layout=%s ps=%d layers=%d heads=%d headdim=%d lora=%d rope=%d bufs=%v",
		cfg.Kind, cfg.DType, cfg.Layout, cfg.PageSize, cfg.LayerNum, cfg.HeadNum, cfg.HeadDim, cfg.KVLoraRank, cfg.QKRopeHeadDim, sizes)
	if cfg.Kind == hostcache.Component {
		fmt.Fprintf(h, " state=%v", cfg.BufferBytes) // sizes above are per page; these per slot
	}
	if s.cfg.component != "" {
		// A component pool's pages are its own, even where another pool
		// (a draft KV pool, say) has the same shape.
		fmt.Fprintf(h, " pool=%s", s.cfg.component)
	}
	s.pool.Store(&poolInfo{pool: p, ps: cfg.PageSize, pageLen: int64(p.PageBytes()), bpp: len(sizes), pages: cfg.Pages,
		poolFP: h.Sum64(), fp: matchKey(h.Sum64(), s.identKey)})
	return nil
}

// Stats returns a snapshot of the store's counters, its component pools' included.
func (s *Store) Stats() Stats {
	st := s.ownStats()
	for _, c := range s.components.all() {
		st.add(c.ownStats())
	}
	return st
}

// ownStats returns the counters of this store alone, without its
// component pools' stores.
func (s *Store) ownStats() Stats {
	c := &s.stats
	return Stats{
		Sets: c.sets.Load(), SetBytes: c.setBytes.Load(), Existed: c.existed.Load(),
		Gets: c.gets.Load(), GetBytes: c.getBytes.Load(), Hits: c.hits.Load(), Misses: c.misses.Load(),
		Corrupt: c.corrupt.Load(), Mismatch: c.mismatch.Load(), SkippedFiles: c.skippedFiles.Load(),
		Errors: c.errors.Load(), Listings: c.listings.Load(), DirectBytes: c.directBytes.Load(),
		Evicted: c.evicted.Load(), EvictedBytes: c.evictedBytes.Load(), EvictErrors: c.evictErrors.Load(),
		SpecialFiles: c.specialFiles.Load(), ReclaimedTemps: c.reclaimedTemps.Load(),
	}
}

// Dir returns the directory the store keeps its files in.
func (s *Store) Dir() string { return s.dir }

// FilePath returns the path of key's old-format file, whether or not it
// exists.
func (s *Store) FilePath(key string) string { return filepath.Join(s.dir, s.oldName(key)) }
