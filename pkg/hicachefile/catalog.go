//go:build linux

package hicachefile

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/lru"
)

// scanState is what the store knows about its listings of the V1
// directory, guarded by mu, which also serialises refreshes and Clear so
// that a directory is read once. The index itself (Store.idx) has locks of
// its own: a lookup that hits never takes mu.
type scanState struct {
	mu      sync.Mutex
	pending map[string]bool // batch files whose index could not be read yet
	mtime   unix.Timespec   // the V1 directory's mtime at the last listing
	at      time.Time       // when the last listing started
	scanned bool            // false until the first listing, and after lost events
	// fdErr is EMFILE or ENFILE while a listing or a pending file failed
	// for want of descriptors: until one succeeds, a miss may be a page
	// the index could not load, and BatchGetV1 returns it as its error.
	fdErr error
}

// reset forgets everything, so that the next lookup rescans. The caller
// holds x.mu.
func (x *scanState) reset(idx *index.Index) {
	idx.Reset()
	x.pending = make(map[string]bool)
	x.fdErr = nil
	x.scanned = false
}

// forgetBatch forgets the batch file name: its pages, and its place in the
// eviction order.
func (s *Store) forgetBatch(name string) {
	s.idx.Forget(name)
	s.lru.Forget(lru.ID{Name: name})
}

// readDirNamesAt lists, unsorted, the names in the directory open at fd:
// the directory the store reads and writes through, even if its path now
// names another. It reads the entries 256 KiB at a time: a directory of
// 100,000 batch files takes some 25 getdents64 calls, not 700.
func readDirNamesAt(fd int) ([]string, error) {
	var names []string
	err := readDirChunksAt(fd, func(chunk []string) { names = append(names, chunk...) })
	return names, err
}

// readDirChunksAt is readDirNamesAt that calls fn with the names of each
// getdents64 buffer as it is read, in a slice fn may keep, instead of
// returning them all at the end.
func readDirChunksAt(fd int, fn func(names []string)) error {
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	buf := make([]byte, 256<<10)
	for {
		n, err := unix.Getdents(dfd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "getdents64", Path: ".", Err: err}
		}
		if n <= 0 {
			return nil
		}
		if _, _, names := unix.ParseDirent(buf[:n], -1, nil); len(names) > 0 {
			fn(names)
		}
	}
}
