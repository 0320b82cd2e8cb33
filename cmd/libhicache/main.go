//go:build linux

// Command libhicache is the store as a C shared library, for callers in
// other languages: the Python package hicache_go loads it with ctypes.
// Build it with
//
//	go build -buildmode=c-shared -o libhicache.so ./cmd/libhicache
//
// (scripts/build-python.sh builds it into python/hicache_go/).
//
// # Calling convention
//
// Every function is prefixed hc_. A store is an integer handle from
// hc_open, never a pointer; hc_close frees it, and a handle is never reused
// within a process. Functions return 0 (or a count) on success and a
// negative code on failure (see the Code constants); hc_last_error copies the
// message of the calling thread's last failure. Every function turns a
// panic into CodePanic with the panic's message.
//
// Keys come in one buffer of bytes with an int64 length per key; host
// indices as a pointer to int64 slot numbers and their count; results go
// into arrays the caller owns (one uint8 per key). Pointers from the caller
// (keys, indices, page buffers, pool memory) are read and written only
// during the call, except the pool memory given to hc_register_pool, which
// the library uses until hc_close returns: its owner keeps it mapped until
// then. hc_close waits for the handle's calls in progress.
//
// # Fork
//
// The library starts a Go runtime when it is loaded. A process that forks
// after that must not call the library in the child (the child's first call
// hangs); load it after the fork, or spawn instead.
package main

// main is required of a c-shared build and never runs.
func main() {}
