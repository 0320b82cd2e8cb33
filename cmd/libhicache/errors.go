//go:build linux

package main

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// Code is the result of a call that failed: always negative.
type Code int64

// The codes the library returns. Their values are part of the C ABI.
const (
	// CodeOK is success.
	CodeOK Code = 0
	// CodeError is a failure with no more specific code: I/O and the like.
	CodeError Code = -1
	// CodeArgument is a bad argument: a nil pointer with a non-zero count,
	// a negative count, bad JSON, an unknown field.
	CodeArgument Code = -2
	// CodeHandle is a handle that is unknown or closed.
	CodeHandle Code = -3
	// CodeNoPool is a zero-copy call on a store with no registered pool.
	CodeNoPool Code = -4
	// CodeInvalidKey is a key that cannot name a file.
	CodeInvalidKey Code = -5
	// CodeLength is arguments whose lengths do not fit together.
	CodeLength Code = -6
	// CodeNotFound is a key with no page (hc_get).
	CodeNotFound Code = -7
	// CodeCorrupt is a stored page that failed a check.
	CodeCorrupt Code = -8
	// CodePanic is a panic caught at the library's boundary.
	CodePanic Code = -9
	// CodeConfig is a store or pool configuration that is not valid.
	CodeConfig Code = -10
	// CodeIndices is host indices that are not whole pages of the pool.
	CodeIndices Code = -11
	// CodeMemory is pool memory that does not fit the pool described.
	CodeMemory Code = -12
	// CodeBufferSmall is an output buffer too small for the result.
	CodeBufferSmall Code = -13
)

// errArgument is the error of CodeArgument.
var errArgument = errors.New("libhicache: invalid argument")

// errHandle is the error of CodeHandle.
var errHandle = errors.New("libhicache: unknown or closed handle")

// errBufferSmall is the error of CodeBufferSmall.
var errBufferSmall = errors.New("libhicache: output buffer too small")

// codeOf maps err to its Code.
func codeOf(err error) Code {
	switch {
	case err == nil:
		return CodeOK
	case errors.Is(err, errArgument):
		return CodeArgument
	case errors.Is(err, errHandle), errors.Is(err, hicachefile.ErrClosed), errors.Is(err, hostcache.ErrClosed):
		return CodeHandle
	case errors.Is(err, errBufferSmall):
		return CodeBufferSmall
	case errors.Is(err, hicachefile.ErrNoPool):
		return CodeNoPool
	case errors.Is(err, hicachefile.ErrInvalidKey):
		return CodeInvalidKey
	case errors.Is(err, hicachefile.ErrLength):
		return CodeLength
	case errors.Is(err, hicachefile.ErrNotFound):
		return CodeNotFound
	case errors.Is(err, hicachefile.ErrCorrupt):
		return CodeCorrupt
	case errors.Is(err, hicachefile.ErrInvalidConfig), errors.Is(err, hostcache.ErrInvalidConfig):
		return CodeConfig
	case errors.Is(err, hostcache.ErrBadIndices), errors.Is(err, hostcache.ErrOutOfRange):
		return CodeIndices
	case errors.Is(err, hostcache.ErrBadRegion):
		return CodeMemory
	}
	return CodeError
}

// lastErrors holds each OS thread's last error message, as errno does: a C
// caller's thread runs the whole of an exported call, so the thread id
// names the caller.
var lastErrors struct {
	mu sync.Mutex
	m  map[int]string
}

// fail records err as the calling thread's last error and returns its code.
func fail(err error) Code {
	c := codeOf(err)
	if c == CodeOK {
		return c
	}
	lastErrors.mu.Lock()
	if lastErrors.m == nil {
		lastErrors.m = make(map[int]string)
	}
	lastErrors.m[unix.Gettid()] = err.Error()
	lastErrors.mu.Unlock()
	return c
}

// lastError returns the calling thread's last error message.
func lastError() string {
	lastErrors.mu.Lock()
	defer lastErrors.mu.Unlock()
	return lastErrors.m[unix.Gettid()]
}

// guard runs f and turns a panic into CodePanic, recorded as the calling
// thread's last error. It is the boundary's last line: a panic here is a
// bug to fix where it happened.
func guard(f func() int64) (r int64) {
	defer func() {
		if p := recover(); p != nil {
			fail(fmt.Errorf("libhicache: panic: %v", p))
			r = int64(CodePanic)
		}
	}()
	return f()
}

// result returns n on success, else the code of err (recorded).
func result(n int64, err error) int64 {
	if err != nil {
		return int64(fail(err))
	}
	return n
}
