//go:build !linux

package hicachefile

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// errUnsupported is what every call returns on this platform: the store
// needs Linux (O_TMPFILE, OFD locks, inotify, getdents, preadv2).
var errUnsupported = fmt.Errorf("hicachefile: %s is not supported, the store needs Linux: %w", runtime.GOOS, errors.ErrUnsupported)

// Store is a HiCacheFile storage backend. It needs Linux: on this
// platform New returns an error wrapping errors.ErrUnsupported and no Store
// exists.
type Store struct{}

// Syscalls is the seam between a Store and the kernel on Linux; it has no
// fields on this platform.
type Syscalls struct{}

// New returns an error wrapping errors.ErrUnsupported: the store needs
// Linux.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, errUnsupported
}

// Close does nothing on this platform.
func (s *Store) Close() error { return nil }

// RegisterMemPoolHost returns an error wrapping errors.ErrUnsupported.
func (s *Store) RegisterMemPoolHost(p *hostcache.Pool) error { return errUnsupported }

// Set returns an error wrapping errors.ErrUnsupported.
func (s *Store) Set(key string, value []byte) error { return errUnsupported }

// Get returns an error wrapping errors.ErrUnsupported.
func (s *Store) Get(key string, dst []byte) error { return errUnsupported }

// BatchSet stores nothing and returns an error wrapping
// errors.ErrUnsupported.
func (s *Store) BatchSet(keys []string, values [][]byte) ([]bool, error) {
	return make([]bool, len(keys)), errUnsupported
}

// BatchGet serves nothing and returns an error wrapping
// errors.ErrUnsupported.
func (s *Store) BatchGet(keys []string, dsts [][]byte) ([]bool, error) {
	return make([]bool, len(keys)), errUnsupported
}

// BatchSetV1 stores nothing and returns an error wrapping
// errors.ErrUnsupported.
func (s *Store) BatchSetV1(keys []string, hostIndices []int64) ([]bool, error) {
	return make([]bool, len(keys)), errUnsupported
}

// BatchGetV1 serves nothing and returns an error wrapping
// errors.ErrUnsupported.
func (s *Store) BatchGetV1(keys []string, hostIndices []int64) ([]bool, error) {
	return make([]bool, len(keys)), errUnsupported
}

// Exists reports false: nothing is stored on this platform.
func (s *Store) Exists(key string) bool { return false }

// BatchExists reports 0: nothing is stored on this platform.
func (s *Store) BatchExists(keys []string) int { return 0 }

// Locate reports false: nothing is stored on this platform.
func (s *Store) Locate(key string) (Location, bool) { return Location{}, false }

// Clear returns an error wrapping errors.ErrUnsupported.
func (s *Store) Clear() error { return errUnsupported }

// Stats returns zero counters.
func (s *Store) Stats() Stats { return Stats{} }

// Dir returns "": there is no store directory on this platform.
func (s *Store) Dir() string { return "" }

// FilePath returns "": there is no store directory on this platform.
func (s *Store) FilePath(key string) string { return "" }

// MaxBytes returns 0: nothing is stored on this platform.
func (s *Store) MaxBytes() int64 { return 0 }

// RegisterPool returns an error wrapping errors.ErrUnsupported.
func (s *Store) RegisterPool(name string, p *hostcache.Pool) error { return errUnsupported }

// BatchExistsV2 reports no page and returns an error wrapping
// errors.ErrUnsupported.
func (s *Store) BatchExistsV2(keys []string, transfers []Transfer) (TransferResult, error) {
	return TransferResult{PoolHitPages: map[string]int{}}, errUnsupported
}

// BatchGetV2 serves nothing and returns an error wrapping
// errors.ErrUnsupported.
func (s *Store) BatchGetV2(transfers []Transfer) (map[string][]bool, error) {
	return noTransfers(transfers), errUnsupported
}

// BatchSetV2 stores nothing and returns an error wrapping
// errors.ErrUnsupported.
func (s *Store) BatchSetV2(transfers []Transfer) (map[string][]bool, error) {
	return noTransfers(transfers), errUnsupported
}

// noTransfers returns a false per key of each transfer, by pool.
func noTransfers(transfers []Transfer) map[string][]bool {
	m := make(map[string][]bool, len(transfers))
	for _, t := range transfers {
		m[t.Pool] = make([]bool, len(t.Keys))
	}
	return m
}
