//go:build linux

package hicachefile

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestComponentReadsFollowMovedDir: after mv Dir Dir.old && mkdir Dir, a
// component pool's pages in the directory moved away are neither served
// nor counted by the v2 calls, with inotify and without.
func TestComponentReadsFollowMovedDir(t *testing.T) {
	for _, noWatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoWatch=%v", noWatch), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "cache")
			kv, kvIdx := randomPages(t, 2)
			comp := newPool(t, componentCfg)
			compIdx, err := comp.Alloc(2)
			if err != nil {
				t.Fatal(err)
			}
			s := newStore(t, Config{Dir: dir, ModelName: "m", NoWatch: noWatch}, kv)
			if err := s.RegisterPool("mamba", comp); err != nil {
				t.Fatal(err)
			}
			keys := []string{"a", "b"}
			ts := []Transfer{{Pool: KVPool, Keys: keys, HostIndices: kvIdx}, {Pool: "mamba", Keys: keys, HostIndices: compIdx}}
			if res, err := s.BatchSetV2(ts); err != nil || !all(res["kv"]) || !all(res["mamba"]) {
				t.Fatalf("BatchSetV2 = %v, %v", res, err)
			}
			if res, err := s.BatchGetV2(ts); err != nil || !all(res["mamba"]) {
				t.Fatalf("BatchGetV2 before the move = %v, %v", res, err)
			}
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if res, err := s.BatchGetV2([]Transfer{{Pool: "mamba", Keys: keys, HostIndices: compIdx}}); err != nil || countTrue(res["mamba"]) != 0 {
				t.Errorf("BatchGetV2(mamba) after the move = %v, %v; want misses", res, err)
			}
			// A KV page at the path, so that only the component pool decides.
			if res, err := s.BatchSetV2(ts[:1]); err != nil || !all(res["kv"]) {
				t.Fatalf("BatchSetV2(kv) after the move = %v, %v", res, err)
			}
			if got, err := s.BatchExistsV2(keys, []Transfer{{Pool: "mamba", Keys: keys}}); err != nil || got.KVHitPages != 0 || got.PoolHitPages["mamba"] != 0 {
				t.Errorf("BatchExistsV2 after the move = %+v, %v; want no mamba page", got, err)
			}
		})
	}
}
