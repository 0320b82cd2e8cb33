package hostcache

import (
	"fmt"
	"unsafe"
)

// Wrap returns a pool over size bytes at base, memory that someone else
// mapped and owns: SGLang's host pool (an anonymous mmap wrapped by
// torch.frombuffer), or any buffer laid out as cfg describes. The pool reads
// and writes that memory in place, exactly where New's pool would put the
// same pages: GetPageBufferMeta, PageBuffers, FlatPageBuffers, GetDataPage
// and SetFromFlatDataPage give the same buffers relative to base. Every page
// starts free, as with New; Alloc and Free track only this pool's own
// reservations, never the owner's.
//
// size must be at least the bytes cfg describes (a larger size, such as a
// mapping rounded up to the system page, leaves the tail untouched), and base
// must be non-nil and aligned to cfg.DType's element size. A nil base, a size
// too small or an unaligned base returns an error wrapping ErrBadRegion; an
// invalid cfg, one wrapping ErrInvalidConfig. cfg.Lock is refused with
// ErrInvalidConfig: locking is the owner's decision.
//
// Lifetime: the owner must keep the memory mapped, readable and writable
// until every store the pool is registered with, and then the pool itself,
// are closed. Close detaches the pool and never unmaps the memory; after
// Close the pool no longer touches it.
func Wrap(cfg Config, base unsafe.Pointer, size int) (*Pool, error) {
	if cfg.Lock {
		return nil, fmt.Errorf("%w: Lock is not supported for a wrapped pool; the memory's owner locks it", ErrInvalidConfig)
	}
	g, err := cfg.geometry()
	if err != nil {
		return nil, err
	}
	if base == nil {
		return nil, fmt.Errorf("%w: base is nil", ErrBadRegion)
	}
	if size < 0 || int64(size) < g.total {
		return nil, fmt.Errorf("%w: %d bytes, the pool needs %d", ErrBadRegion, size, g.total)
	}
	if it := uintptr(cfg.DType.Size()); uintptr(base)%it != 0 {
		return nil, fmt.Errorf("%w: base %#x is not aligned to the %d-byte element of %s", ErrBadRegion, uintptr(base), it, cfg.DType)
	}
	if uintptr(base) > ^uintptr(0)-uintptr(g.total) {
		return nil, fmt.Errorf("%w: %d bytes at %#x wrap around the address space", ErrBadRegion, g.total, uintptr(base))
	}
	mem := unsafe.Slice((*byte)(base), int(g.total))
	return newPool(cfg, g, mem, false), nil
}
