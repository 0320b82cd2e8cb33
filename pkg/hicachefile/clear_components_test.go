//go:build linux

package hicachefile

import (
	"testing"
)

// TestClearRemovesComponentPagesOfUnregisteredPools: a Clear by a store of
// the same identity that has no component pool registered (another
// process, or this one before registering) still removes the component
// pools' batch files: no component page written before it is served or
// counted after it.
func TestClearRemovesComponentPagesOfUnregisteredPools(t *testing.T) {
	dir := t.TempDir()
	s, _, _, kvIdx, compIdx := v2Store(t, dir, 2)
	keys := []string{"a", "b"}
	ts := []Transfer{{Pool: KVPool, Keys: keys, HostIndices: kvIdx}, {Pool: "mamba", Keys: keys, HostIndices: compIdx}}
	if res, err := s.BatchSetV2(ts); err != nil || !all(res["kv"]) || !all(res["mamba"]) {
		t.Fatalf("BatchSetV2 = %v, %v", res, err)
	}
	other := newStore(t, Config{Dir: dir, ModelName: "m"}, nil)
	if err := other.Clear(); err != nil {
		t.Fatal(err)
	}
	_ = other.Close()
	if got, err := s.BatchGetV2([]Transfer{{Pool: "mamba", Keys: keys, HostIndices: compIdx}}); err != nil || countTrue(got["mamba"]) != 0 {
		t.Errorf("the writer after another store's Clear: BatchGetV2(mamba) = %v, %v; want misses", got, err)
	}
	if got, err := s.BatchExistsV2(keys, []Transfer{{Pool: "mamba", Keys: keys}}); err != nil || got.KVHitPages != 0 {
		t.Errorf("the writer after another store's Clear: BatchExistsV2 = %+v, %v; want 0", got, err)
	}
	r, _, _, _, compIdx2 := v2Store(t, dir, 2)
	if got, err := r.BatchGetV2([]Transfer{{Pool: "mamba", Keys: keys, HostIndices: compIdx2}}); err != nil || countTrue(got["mamba"]) != 0 {
		t.Errorf("a new store after Clear: BatchGetV2(mamba) = %v, %v; want misses", got, err)
	}
	if files := batchFiles(t, dir); len(files) != 0 {
		t.Errorf("batch files left after Clear: %v", files)
	}
}
