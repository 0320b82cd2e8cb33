//go:build linux

package hicachefile

import (
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFDLimitWhileLoadingNeverSilentMiss: running out of descriptors while loading
// the index of a batch file another store just wrote is never a silent
// miss, also for a key with '_', which has no old-format fallback to fail
// instead.
func TestFDLimitWhileLoadingNeverSilentMiss(t *testing.T) {
	bothModes(t, func(t *testing.T, noWatch bool) {
		ps := mhaCfg.PageSize
		p, idx := randomPages(t, 2)
		dir := t.TempDir()
		var failing atomic.Bool
		sys := Syscalls{Openat: func(d int, path string, fl int, m uint32) (int, error) {
			if fl&unix.O_CREAT == 0 && failing.Load() {
				return -1, unix.EMFILE
			}
			return unix.Openat(d, path, fl, m)
		}}
		r := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch, Syscalls: sys}, p)
		r.Exists("warm-up")
		w := newStore(t, Config{Dir: dir, ModelName: "m"}, p)
		if ok, err := w.BatchSetV1([]string{"k_1"}, idx[:ps]); err != nil || !ok[0] {
			t.Fatal(ok, err)
		}
		failing.Store(true)
		ok, err := r.BatchGetV1([]string{"k_1"}, idx[ps:])
		if err == nil && !ok[0] {
			t.Errorf("BatchGetV1(k_1) out of descriptors = %v, nil: a silent miss", ok)
		}
		failing.Store(false)
		if ok, err := r.BatchGetV1([]string{"k_1"}, idx[ps:]); err != nil || !ok[0] || !samePages(t, p, idx[0], idx[ps]) {
			t.Errorf("BatchGetV1(k_1) with descriptors back = %v, %v", ok, err)
		}
	})
}
