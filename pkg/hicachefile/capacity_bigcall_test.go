//go:build linux

package hicachefile

import (
	"fmt"
	"testing"
)

// TestOneCallLargerThanMaxBytesStaysWithin: a BatchSetV1 of more pages than
// MaxBytes holds leaves the directory within MaxBytes, keeping the call's
// last pages, as SGLang's page-by-page writes under its evictor keep the
// last ones.
func TestOneCallLargerThanMaxBytesStaysWithin(t *testing.T) {
	const n = 16
	p, idx := randomPages(t, n)
	dir := t.TempDir()
	limit := 5 * oneKeyFile(p.PageBytes())
	s := newStore(t, Config{Dir: dir, ModelName: "m", MaxBytes: limit}, p)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	ok, err := s.BatchSetV1(keys, idx[:n*mhaCfg.PageSize])
	if err != nil || !all(ok) {
		t.Fatalf("BatchSetV1 = %v, %v", ok, err)
	}
	if got := dirFileBytes(t, dir); got > limit {
		t.Errorf("after one call of %d pages the directory holds %d bytes, MaxBytes is %d", n, got, limit)
	}
	if !s.Exists(keys[n-1]) {
		t.Errorf("the call's last page is not stored")
	}
}
