package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// DefaultMaxBatchFileBytes is the payload limit of one V1 batch file when
// Config.MaxBatchFileBytes is zero.
const DefaultMaxBatchFileBytes = 64 << 20

// DefaultPollInterval is Config.PollInterval when it is zero.
const DefaultPollInterval = 200 * time.Millisecond

// Config describes a Store. The zero value of each field means its default.
type Config struct {
	// Dir is the directory that holds the files: "" means SGLang's
	// $SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR, else $HICACHE_FILE_DIR, else
	// filepath.Join(os.TempDir(), "hicache") (SGLang's /tmp/hicache). It is
	// created if missing.
	Dir string
	// ModelName names the model in every file name, with '/' replaced by
	// '-': it keeps different models' pages apart. It may be empty, as in
	// SGLang, whose files are then named like "abc__0_1.bin"; stores of
	// unnamed models then share one another's files, and only the pool
	// fingerprint of V1 pages tells them apart. It must be short enough that
	// the store's temp file names, the longest names it makes (39 bytes
	// more than the suffix), fit in 255 bytes.
	ModelName string
	// TPRank and TPSize are the tensor-parallel rank and world size; TPSize
	// 0 means 1. MLA stores leave them out of file names, since MLA KV is
	// identical on every TP rank.
	TPRank, TPSize int
	// PPRank and PPSize are the pipeline-parallel rank and size; PPSize 0
	// means 1. They appear in file names when PPSize > 1.
	PPRank, PPSize int
	// CPRank and CPSize are the attention context-parallel rank and size
	// (SGLang's attn_cp_rank and attn_cp_size); CPSize 0 means 1. When
	// CPSize > 1 file names gain "_cp{CPRank}_{CPSize}" after the PP part,
	// as SGLang's do: each CP rank holds a disjoint slice of every page, so
	// two CP ranks never share a file, a V1 directory or a batch file.
	CPRank, CPSize int
	// IsMLA marks the model's KV cache as MLA.
	IsMLA bool
	// MaxBatchFileBytes bounds the payload of one V1 batch file: a V1 call
	// is split into files of at most this many page bytes, at least one
	// page each. 0 means DefaultMaxBatchFileBytes.
	MaxBatchFileBytes int64
	// Sync makes every write durable before it is reported: fdatasync of
	// each file and fsync of the directory after each rename. Off, a crash
	// may lose recent pages but never exposes a partial one.
	Sync bool
	// IOWorkers is how many goroutines share the reads and writes of one V1
	// call when it moves more than a MiB or so: 0 means GOMAXPROCS, at most
	// 8. Copies between the page cache and pool memory are bound by one
	// core's memory bandwidth, so a second worker nearly doubles them.
	IOWorkers int
	// MaxBytes bounds the bytes of this store's files in Dir: the batch
	// files of its V1 directory and the old-format files of its suffix
	// (SGLang's max_size), with those of the component pools registered
	// with RegisterPool, which share the bound and are evicted with the
	// store's own files least recently used first, as far as it has
	// found them (see Capacity in the package doc: another process's
	// old-format files count from the next listing of Dir). After a write that takes the total over
	// MaxBytes, the least recently used files (by writes and read hits in
	// this process; files found on disk count as used at their
	// modification time, clamped to now) are removed until the total is at
	// most MaxBytes x EvictionRatio, sparing the files the write just made
	// (of a call that writes more than that, its newest files that fit)
	// and temp files still being written. A batch file goes whole, and
	// holds no more pages than MaxBytes x EvictionRatio. A page
	// larger than MaxBytes is refused (ErrRefused; false from BatchSetV1).
	// A MaxBytes larger than the file system less MinFreeBytes is clamped
	// to that at New (Store.MaxBytes). 0 means
	// $SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE read with ParseSize, and no
	// bound when that is unset, "0" or invalid.
	MaxBytes int64
	// EvictionRatio is SGLang's eviction_ratio: eviction, once the total
	// goes over MaxBytes, removes files until it is at most MaxBytes times
	// this. 0 means $SGLANG_HICACHE_FILE_BACKEND_EVICTION_RATIO, else
	// DefaultEvictionRatio; any value outside (0, 1], and an unparsable
	// environment value, also means DefaultEvictionRatio. 1 evicts just
	// enough to fit.
	EvictionRatio float64
	// StorageOwner says whether this rank owns its files while eviction is
	// configured (MaxBytes or MinFreeBytes set): an owner writes and
	// evicts; any other rank only reads and checks existence, its writes
	// refused (ErrRefused; false from BatchSetV1) and nothing evicted, as
	// SGLang's HiCacheFile does. nil means SGLang's rule: every rank of an
	// MHA model owns the files named with its own suffix, and of an MLA
	// model, whose ranks share one set of files, only TP rank 0 does.
	// Without eviction every rank writes, whatever StorageOwner says.
	StorageOwner *bool
	// MinFreeBytes, SGLang's min_free_space, makes eviction also keep the
	// file system's free space (statvfs, as available to this user) at or
	// above this many bytes, by removing the least recently used files.
	// A page that would leave less free, after evicting what the store may,
	// is refused (ErrRefused; false from BatchSetV1), as SGLang refuses it.
	// With it or MaxBytes set, a write that meets ENOSPC or EDQUOT while
	// the store holds files it can evict removes enough of them and tries
	// again, up to 3 times. 0 means
	// $SGLANG_HICACHE_FILE_BACKEND_MIN_FREE_SPACE read with ParseSize, and
	// no bound when that is unset, "0" or invalid.
	MinFreeBytes int64
	// DirectIO makes BatchGetV1 read pages from batch files with O_DIRECT,
	// straight from the device into pool memory, bypassing the page cache:
	// for a cache larger than RAM, or to measure the disk itself. A read
	// goes direct only where the file system supports it and the page
	// buffers, offsets and lengths meet the alignment it reports (statx
	// STATX_DIOALIGN; 4096 where the kernel does not say); other reads, and
	// every write, go through the page cache. Stats.DirectBytes shows what
	// went direct.
	DirectIO bool
	// NoWatch makes the store find other processes' batch files by
	// comparing the V1 directory's mtime on a miss, and listing it when it
	// changed, instead of following it with inotify. The store falls back to
	// that by itself where inotify is unavailable, and adds it on network
	// file systems, whose other clients raise no inotify event here.
	NoWatch bool
	// NoEnv makes a zero MaxBytes, MinFreeBytes or EvictionRatio mean
	// exactly that (no bound; DefaultEvictionRatio) instead of reading
	// SGLang's environment variables: for a caller that resolved SGLang's
	// settings itself, as SGLang does, from extra_config first, so that an
	// explicit "0" there is not overridden by the environment.
	NoEnv bool
	// PollInterval bounds how stale a polling store's view of the V1
	// directory may be. A store polls where inotify does not tell it of
	// other writers' batch files: without inotify, with NoWatch, and on
	// network and cluster file systems (NFS, SMB, FUSE such as GlusterFS's
	// client or 3FS, CephFS, Lustre, GPFS, BeeGFS), where inotify sees
	// only this host's changes (the store keeps its watch there for
	// those). A lookup that misses lists the V1 directory when its mtime
	// changed since the last listing, or when that listing started
	// PollInterval ago or more, since a network client may cache the
	// directory's mtime (GlusterFS's FUSE client about a second) while a
	// listing already shows the new name. So another node's batch file is
	// found by the first miss at most PollInterval plus one listing after
	// the file system itself shows its name (its own name lookup and
	// directory caches come on top), at the cost of at most one listing
	// per PollInterval that is not called for by an mtime change. Callers
	// that miss at once share one listing. 0 means
	// DefaultPollInterval; a negative value lists only when the mtime
	// changed.
	PollInterval time.Duration
	// Syscalls replaces the system calls the store makes on its files, for
	// fault-injection tests. The zero value uses the real ones.
	Syscalls Syscalls

	// component names the component pool a store holds pages of (see
	// Store.RegisterPool); "" for the KV pool.
	component string
}

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	if c.Dir == "" {
		for _, env := range []string{"SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR", "HICACHE_FILE_DIR"} {
			if c.Dir = os.Getenv(env); c.Dir != "" {
				break
			}
		}
		if c.Dir == "" {
			c.Dir = filepath.Join(os.TempDir(), "hicache")
		}
	}
	if c.TPSize == 0 {
		c.TPSize = 1
	}
	if c.PPSize == 0 {
		c.PPSize = 1
	}
	if c.CPSize == 0 {
		c.CPSize = 1
	}
	if c.MaxBytes == 0 && !c.NoEnv {
		c.MaxBytes, _ = ParseSize(os.Getenv(envMaxSize))
	}
	if c.MinFreeBytes == 0 && !c.NoEnv {
		c.MinFreeBytes, _ = ParseSize(os.Getenv(envMinFreeSpace))
	}
	c.EvictionRatio = evictionRatio(c.EvictionRatio, !c.NoEnv)
	if c.IOWorkers == 0 {
		c.IOWorkers = min(runtime.GOMAXPROCS(0), 8)
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxBatchFileBytes == 0 {
		c.MaxBatchFileBytes = DefaultMaxBatchFileBytes
	}
	return c
}

// Validate reports whether c, with its defaults filled in, describes a
// store. The error wraps ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case strings.ContainsRune(c.ModelName, 0):
		return bad("ModelName contains NUL")
	case c.TPSize < 0 || c.TPRank < 0 || c.TPRank >= c.TPSize:
		return bad("TPRank %d is not in [0, TPSize %d)", c.TPRank, c.TPSize)
	case c.PPSize < 0 || c.PPRank < 0 || c.PPRank >= c.PPSize:
		return bad("PPRank %d is not in [0, PPSize %d)", c.PPRank, c.PPSize)
	case c.CPSize < 0 || c.CPRank < 0 || c.CPRank >= c.CPSize:
		return bad("CPRank %d is not in [0, CPSize %d)", c.CPRank, c.CPSize)
	case c.IOWorkers < 0:
		return bad("IOWorkers is %d, must not be negative", c.IOWorkers)
	case c.MaxBytes < 0:
		return bad("MaxBytes is %d, must not be negative", c.MaxBytes)
	case c.MinFreeBytes < 0:
		return bad("MinFreeBytes is %d, must not be negative", c.MinFreeBytes)
	case c.MaxBatchFileBytes < 0:
		return bad("MaxBatchFileBytes is %d, must not be negative", c.MaxBatchFileBytes)
	case len(lockedTmpPrefix)+tokenHex+1+digestHex+len(c.suffix())+len(tmpExt) > maxName:
		// The temp file name is the longest name the store makes itself.
		return bad("ModelName of %d bytes makes file names longer than %d bytes", len(c.ModelName), maxName)
	}
	return nil
}

// suffix returns SGLang's file-name suffix for c: "_" + model, then
// "_{tp_rank}_{tp_size}" unless MLA, then "_{pp_size}_{pp_rank}" when
// pp_size > 1, then "_cp{attn_cp_rank}_{attn_cp_size}" when attn_cp_size >
// 1 (HiCacheFile.__init__ in sgl-project/sglang
// python/sglang/srt/mem_cache/hicache_storage.py at commit 001067f). A
// component pool's store puts "." and the pool's name first, so that its
// old-format name is SGLang's {key}.{pool}{suffix}.bin. c has its
// defaults filled in.
func (c Config) suffix() string {
	s := "_" + strings.ReplaceAll(c.ModelName, "/", "-")
	if !c.IsMLA {
		s += fmt.Sprintf("_%d_%d", c.TPRank, c.TPSize)
	}
	if c.PPSize > 1 {
		s += fmt.Sprintf("_%d_%d", c.PPSize, c.PPRank)
	}
	if c.CPSize > 1 {
		s += fmt.Sprintf("_cp%d_%d", c.CPRank, c.CPSize)
	}
	if c.component != "" {
		s = "." + c.component + s
	}
	return s
}
