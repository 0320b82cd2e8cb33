//go:build unix

package hostcache

import "golang.org/x/sys/unix"

// mapAnon maps n bytes of private, zeroed, page-aligned memory.
func mapAnon(n int) ([]byte, error) {
	return unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
}

// lockMem locks mem in RAM (mlock(2)).
func lockMem(mem []byte) error { return unix.Mlock(mem) }

// unmapMem unmaps memory from mapAnon (munmap(2)).
func unmapMem(mem []byte) error { return unix.Munmap(mem) }
