//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hicache-go/hicache/pkg/hostcache"
)

// TestPoolClosedDuringCalls closes the registered pool while goroutines
// write and read through it (a caller's bug): no call faults, each either
// completes or returns ErrClosed, and every call after Close returns
// ErrClosed with every entry false.
func TestPoolClosedDuringCalls(t *testing.T) {
	for round := range 5 {
		cfg := mhaCfg
		cfg.Pages = 64
		p, err := hostcache.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := newStore(t, Config{Dir: t.TempDir(), ModelName: "m"}, p)
		const per = 8
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range 4 {
			idx, err := p.Alloc(per * cfg.PageSize)
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				<-start
				for r := 0; ; r++ {
					keys := make([]string, per)
					for i := range keys {
						keys[i] = fmt.Sprintf("r%dw%dk%d", round, w, (r+i)%32)
					}
					var ok []bool
					var err error
					if r%2 == 0 {
						ok, err = s.BatchSetV1(keys, idx)
					} else {
						ok, err = s.BatchGetV1(keys, idx)
					}
					if err != nil {
						if !errors.Is(err, hostcache.ErrClosed) {
							t.Errorf("call %d: %v", r, err)
						}
						for _, b := range ok {
							if b {
								t.Errorf("call %d failed with %v but reported a key done", r, err)
								break
							}
						}
						return
					}
				}
			})
		}
		close(start)
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
}
