package hostcache

import (
	"fmt"
	"sync"
)

// Pool is a host KV pool: one anonymous mmap holding every page of a model's
// KV cache in one of SGLang's layouts, and a page allocator over it.
//
// A Pool is safe for concurrent use by multiple goroutines. The bytes of a
// page are not guarded: two goroutines that write the same page, or one that
// writes while another reads, must order themselves. See the package
// documentation for how long buffers from GetPageBufferMeta stay valid.
type Pool struct {
	cfg Config
	g   geometry

	mu   sync.RWMutex
	pins sync.RWMutex // held shared by each Pin, exclusively by Close
	mem  []byte       // the pool's memory; nil once closed
	own  bool         // mem is New's own mapping, unmapped by Close
	free []int64      // free page numbers, popped from the end
	used []bool       // per page: allocated by Alloc
}

// New maps a zeroed buffer for cfg and returns a pool with every page free.
func New(cfg Config) (*Pool, error) {
	g, err := cfg.geometry()
	if err != nil {
		return nil, err
	}
	mem, err := mapAnon(int(g.total))
	if err != nil {
		return nil, fmt.Errorf("hostcache: mmap %d bytes: %w", g.total, err)
	}
	if cfg.Lock {
		if err := lockMem(mem); err != nil {
			_ = unmapMem(mem)
			return nil, fmt.Errorf("hostcache: mlock %d bytes (raise RLIMIT_MEMLOCK, ulimit -l, or set Lock to false): %w", g.total, err)
		}
	}
	return newPool(cfg, g, mem, true), nil
}

// newPool returns a pool over mem with every page free; own says whether
// Close unmaps mem.
func newPool(cfg Config, g geometry, mem []byte, own bool) *Pool {
	pages := int64(cfg.Pages)
	p := &Pool{cfg: cfg, g: g, mem: mem, own: own, free: make([]int64, pages), used: make([]bool, pages)}
	for i := range p.free {
		p.free[i] = pages - 1 - int64(i) // so that Alloc hands out low pages first
	}
	return p
}

// Close unmaps the memory of a pool from New; every pointer and slice the
// pool handed out becomes invalid. A pool from Wrap is only detached: the
// memory stays mapped and its owner's, and the pool no longer touches it.
// Close waits for calls in progress and for every Pin to be released; a
// second Close, like any later call, returns ErrClosed.
func (p *Pool) Close() error {
	p.pins.Lock()
	defer p.pins.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mem == nil {
		return ErrClosed
	}
	mem := p.mem
	p.mem = nil
	if !p.own {
		return nil
	}
	err := unmapMem(mem)
	if err != nil {
		return fmt.Errorf("hostcache: munmap: %w", err)
	}
	return nil
}

// Pin keeps the pool's memory mapped until Unpin: Close waits for it. A
// storage layer pins the pool for the length of a call that moves bytes
// through buffers from GetPageBufferMeta or PageBuffers, so that a Close
// racing the call (a caller's bug) waits instead of unmapping memory under
// it. Pin returns ErrClosed once the pool is closed; after a nil error the
// caller must call Unpin exactly once. A goroutine must not Pin a pool it
// has pinned already: a Close waiting between the two would deadlock.
func (p *Pool) Pin() error {
	p.pins.RLock()
	p.mu.RLock()
	closed := p.mem == nil
	p.mu.RUnlock()
	if closed {
		p.pins.RUnlock()
		return ErrClosed
	}
	return nil
}

// Unpin releases a Pin.
func (p *Pool) Unpin() { p.pins.RUnlock() }

// Config returns the configuration the pool was built with.
func (p *Pool) Config() Config { return p.cfg }

// SizePerToken returns the bytes of one token slot: all layers, K and V.
func (p *Pool) SizePerToken() int { return int(p.g.layers * p.g.row * p.g.halves) }

// PageBytes returns the bytes of one whole page, the length of a flat data
// page.
func (p *Pool) PageBytes() int { return int(p.g.pageSize) }

// BuffersPerPage returns how many buffers GetPageBufferMeta lists per page:
// 2 for MHA and 1 for MLA, times LayerNum for layer_first.
func (p *Pool) BuffersPerPage() int { return p.g.buffersPerPage() }

// Region returns the address and length of the pool's memory, or (0, 0) once
// the pool is closed. Every buffer from GetPageBufferMeta lies inside it.
func (p *Pool) Region() (base uintptr, size int) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.mem == nil {
		return 0, 0
	}
	return baseOf(p.mem), len(p.mem)
}

// Alloc reserves need token slots, a positive multiple of PageSize, as whole
// pages, and returns their indices: PageSize consecutive slots per page.
// With too few free pages it returns ErrNoSpace and reserves nothing.
func (p *Pool) Alloc(need int) ([]int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mem == nil {
		return nil, ErrClosed
	}
	if need <= 0 || int64(need)%p.g.ps != 0 {
		return nil, fmt.Errorf("%w: need %d is not a positive multiple of page size %d", ErrBadIndices, need, p.g.ps)
	}
	pages := int64(need) / p.g.ps
	if pages > int64(len(p.free)) {
		return nil, fmt.Errorf("%w: need %d slots, %d free", ErrNoSpace, need, int64(len(p.free))*p.g.ps)
	}
	out := make([]int64, 0, need)
	for range pages {
		pg := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		p.used[pg] = true
		for s := range p.g.ps {
			out = append(out, pg*p.g.ps+s)
		}
	}
	return out, nil
}

// Free returns whole pages to the pool. Freeing a page that is not allocated,
// or naming a page twice, returns ErrDoubleFree and frees nothing.
func (p *Pool) Free(indices []int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mem == nil {
		return ErrClosed
	}
	starts, err := p.pageStarts(indices)
	if err != nil {
		return err
	}
	seen := make(map[int64]bool, len(starts))
	for _, s := range starts {
		pg := s / p.g.ps
		if !p.used[pg] || seen[pg] {
			return fmt.Errorf("%w: page at slot %d", ErrDoubleFree, s)
		}
		seen[pg] = true
	}
	for _, s := range starts {
		pg := s / p.g.ps
		p.used[pg] = false
		p.free = append(p.free, pg)
	}
	return nil
}

// Available returns the number of free token slots.
func (p *Pool) Available() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.free) * int(p.g.ps)
}

// pageStarts checks that indices are whole pages inside the pool and returns
// the first slot of each.
func (p *Pool) pageStarts(indices []int64) ([]int64, error) {
	ps := int(p.g.ps)
	if len(indices)%ps != 0 {
		return nil, fmt.Errorf("%w: %d indices for page size %d", ErrBadIndices, len(indices), ps)
	}
	starts := make([]int64, 0, len(indices)/ps)
	for i := 0; i < len(indices); i += ps {
		first, err := p.checkPage(indices[i:i+ps], i)
		if err != nil {
			return nil, err
		}
		starts = append(starts, first)
	}
	return starts, nil
}

// checkPage checks that page, found at position pos of a call's indices,
// is the ps consecutive slots of one page inside the pool, and returns its
// first slot.
func (p *Pool) checkPage(page []int64, pos int) (int64, error) {
	first := page[0]
	if err := p.checkStart(first); err != nil {
		return 0, err
	}
	// Without a branch per slot: OR together how far each slot is from
	// where it should be, and look for the culprit only if one is off.
	diff := int64(0)
	for j, v := range page {
		diff |= v ^ (first + int64(j))
	}
	if diff == 0 {
		return first, nil
	}
	for j, v := range page {
		if v != first+int64(j) {
			return 0, fmt.Errorf("%w: slot %d at position %d does not follow %d", ErrBadIndices, v, pos+j, first+int64(j)-1)
		}
	}
	return first, nil
}

// checkStart checks that idx is in range and the first slot of a page.
func (p *Pool) checkStart(idx int64) error {
	if idx < 0 || idx >= p.g.slots {
		return fmt.Errorf("%w: slot %d, pool has %d", ErrOutOfRange, idx, p.g.slots)
	}
	if idx%p.g.ps != 0 {
		return fmt.Errorf("%w: slot %d is not on a page boundary (page size %d)", ErrBadIndices, idx, p.g.ps)
	}
	return nil
}
