package hicachefile

import (
	"errors"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
)

var (
	// ErrNotFound is returned by Get when no file holds the key.
	ErrNotFound = errors.New("hicachefile: key not found")

	// ErrCorrupt is returned when a stored page fails a check: an old-format
	// file of the wrong size, or a batch file whose page, index or trailer
	// does not verify. A corrupt page is always a miss, never served.
	ErrCorrupt = batchfile.ErrCorrupt

	// ErrInvalidKey is returned for a key that cannot name a file: empty,
	// "." or "..", containing '/' or NUL, or so long that its old-format file
	// name would exceed 255 bytes.
	ErrInvalidKey = errors.New("hicachefile: invalid key")

	// ErrNoPool is returned by BatchSetV1 and BatchGetV1 when no host pool
	// has been registered with RegisterMemPoolHost.
	ErrNoPool = errors.New("hicachefile: no host pool registered")

	// ErrInvalidConfig is returned by Config.Validate and New for a Config
	// that cannot describe a store.
	ErrInvalidConfig = errors.New("hicachefile: invalid config")

	// ErrLength is returned when a call's arguments do not fit together:
	// keys and values, keys and destinations, or keys and host indices of
	// different lengths, or two keys of BatchGetV1 given the same slots.
	ErrLength = errors.New("hicachefile: argument lengths do not match")

	// ErrRefused is returned by Set when the store declines a new page, as
	// SGLang's HiCacheFile answers False: eviction is configured and this
	// rank is not the storage owner (Config.StorageOwner), the page is
	// larger than MaxBytes, or writing it would leave less than MinFreeBytes
	// free even after evicting every file the store may. BatchSetV1 and BatchSetV2 report such pages
	// false without an error.
	ErrRefused = errors.New("hicachefile: write refused")

	// ErrClosed is returned by the Store methods that return an error when
	// they are called after Close; Exists, BatchExists and Locate then report
	// nothing stored.
	ErrClosed = errors.New("hicachefile: store is closed")
)
