//go:build linux

package main

import (
	"errors"
	"sync"

	"github.com/hicache-go/hicache/pkg/hicachefile"
	"github.com/hicache-go/hicache/pkg/hostcache"
)

// entry is one open store and the pools registered with it.
type entry struct {
	// mu is held shared by every call on the store and exclusively by
	// hc_register_pool and hc_close, so that a pool is detached, and the
	// store closed, only once no call uses them.
	mu    sync.RWMutex
	store *hicachefile.Store // nil once closed
	pool  *hostcache.Pool    // the KV pool, which the V1 calls use; nil before one is registered
	ps    int                // the KV pool's page size, 0 without one
	// comps are the component pools registered for the v2 calls, by name.
	comps map[string]*hostcache.Pool
}

// isKV reports whether name is the KV pool's, as hicachefile.RegisterPool
// reads it.
func isKV(name string) bool {
	return name == "" || name == hicachefile.KVPool || name == "__default__"
}

// handles maps the integer handles given out to their stores. Handles
// start at 1 and are never reused within a process.
var handles struct {
	mu   sync.Mutex
	next int64
	m    map[int64]*entry
}

// addHandle registers e and returns its handle.
func addHandle(e *entry) int64 {
	handles.mu.Lock()
	defer handles.mu.Unlock()
	if handles.m == nil {
		handles.m = make(map[int64]*entry)
	}
	handles.next++
	handles.m[handles.next] = e
	return handles.next
}

// lookup returns the entry of h, or nil.
func lookup(h int64) *entry {
	handles.mu.Lock()
	defer handles.mu.Unlock()
	return handles.m[h]
}

// acquire returns h's entry with its lock held shared and the store open;
// the caller calls e.mu.RUnlock when done.
func acquire(h int64) (*entry, error) {
	e := lookup(h)
	if e == nil {
		return nil, errHandle
	}
	e.mu.RLock()
	if e.store == nil {
		e.mu.RUnlock()
		return nil, errHandle
	}
	return e, nil
}

// closeHandle forgets h, waits for its calls in progress, closes its store
// and detaches its pools. The pools' memory is the caller's and stays
// mapped.
func closeHandle(h int64) error {
	handles.mu.Lock()
	e := handles.m[h]
	delete(handles.m, h)
	handles.mu.Unlock()
	if e == nil {
		return errHandle
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.store == nil {
		return errHandle
	}
	err := e.store.Close()
	if e.pool != nil {
		err = errors.Join(err, e.pool.Close())
	}
	for _, p := range e.comps {
		err = errors.Join(err, p.Close())
	}
	e.store, e.pool, e.comps = nil, nil, nil
	return err
}
