//go:build !unix

package hostcache

import (
	"errors"
	"fmt"
	"runtime"
)

// errNoMmap is what mapAnon returns where there is no mmap(2).
var errNoMmap = fmt.Errorf("hostcache: %s is not supported: %w", runtime.GOOS, errors.ErrUnsupported)

// mapAnon returns an error wrapping errors.ErrUnsupported: New needs
// mmap(2); Wrap works on any platform.
func mapAnon(n int) ([]byte, error) { return nil, errNoMmap }

// lockMem returns an error wrapping errors.ErrUnsupported.
func lockMem(mem []byte) error { return errNoMmap }

// unmapMem does nothing: mapAnon maps nothing here.
func unmapMem(mem []byte) error { return nil }
