package hicachefile

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Adversarial tests of unnamed batch writes: a store without MaxBytes or
// MinFreeBytes writes a batch file into a file made with O_TMPFILE, which
// has no name, and links it under its final name once complete.

// TestAdv3NoFDLeakOnFault fails each successive system call of a
// BatchSetV1 that spans four batch files, written with no name, until the
// call succeeds: no failing run may leave a descriptor open (an unnamed
// file left open is also its disk space, held until the process exits).
// A failed link of one file used to leave the files after it, written but
// never linked, open: the cleanup of the later chunks only looked for temp
// files with a name.
func TestAdv3NoFDLeakOnFault(t *testing.T) {
	for _, workers := range []int{1, 2} {
		for _, sync := range []bool{false, true} {
			t.Run(fmt.Sprintf("IOWorkers=%d/Sync=%v", workers, sync), func(t *testing.T) {
				const keysN, perFile = 10, 3
				_, p, keys, src, _ := faultFixture(t, keysN)
				base := shmDir(t) // fsync costs nothing on tmpfs
				for n := int64(1); ; n++ {
					dir := filepath.Join(base, strconv.Itoa(int(n)))
					f := &faults{n: n}
					before := openFDs(t)
					s, err := New(Config{Dir: dir, ModelName: "m", MaxBatchFileBytes: int64(perFile * p.PageBytes()),
						IOWorkers: workers, Sync: sync, Syscalls: f.syscalls()})
					if err != nil {
						if !f.hit() {
							t.Fatal(err)
						}
						continue // a fault in New itself
					}
					if err := s.RegisterMemPoolHost(p); err != nil {
						t.Fatal(err)
					}
					if !s.unnamedWrites() {
						t.Fatal("a store without a bound does not write with no name")
					}
					_, err = s.BatchSetV1(keys, src)
					_ = s.Close()
					if after := openFDs(t); after != before {
						t.Fatalf("call %d (err %v): %d descriptors open before the store, %d after its Close", n, err, before, after)
					}
					if !f.hit() {
						if err != nil {
							t.Fatal(err)
						}
						return
					}
					if err != nil && !errors.Is(err, unix.EIO) {
						t.Fatalf("call %d: err = %v, want the injected EIO", n, err)
					}
				}
			})
		}
	}
}
