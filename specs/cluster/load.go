package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile"
)

// churnWindow is how long the keys of one window are written: writers of
// every node pick keys from the current window, so they race on the same
// keys, and readers read the current and last two windows.
const churnWindow = time.Second

// churn writes and reads at once for r.For. r.Store is shared by every
// node (same model, same TP rank) and r.Also[0] is this node's own TP rank
// of a model spread over ranks: the writer writes batches of 4 keys of the
// current window to both, through a random interface. r.Also[1:] are other
// ranks' stores, only read. The reader reads 8 keys at a time from any of
// them and checks every page. The reply holds the keys each store reported
// stored.
func (n *node) churn(r request, rep *reply) error {
	specs := append([]storeSpec{r.Store}, r.Also...)
	stores := make([]*hicachefile.Store, len(specs))
	for i, sp := range specs {
		s, err := n.store(sp)
		if err != nil {
			return err
		}
		stores[i] = s
	}
	writeTo := min(2, len(specs))
	start := time.Now()
	deadline := start.Add(r.For)
	window := func() int { return int(time.Since(start) / churnWindow) }
	keys := func(rng *rand.Rand, w, count int) []string {
		out := make([]string, 0, count)
		for _, j := range rng.Perm(32)[:count] {
			out = append(out, fmt.Sprintf("c-%d-%d", w, j))
		}
		return out
	}
	var wg sync.WaitGroup
	var errs [2]error
	var wc, rc counts
	stored := map[string][]string{}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(uint64(r.Seed), 1))
		for time.Now().Before(deadline) {
			for i := range writeTo {
				ks := keys(rng, window(), 4)
				var ok []bool
				var err error
				if rng.IntN(3) == 0 {
					ok, err = n.writeOld(stores[i], specs[i], ks, 0)
				} else {
					ok, err = n.writeV1(stores[i], specs[i], ks, 0)
				}
				if err != nil {
					errs[0] = err
					return
				}
				for j, k := range ks {
					if ok[j] {
						wc.Written++
						stored[specs[i].String()] = append(stored[specs[i].String()], k)
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(uint64(r.Seed), 2))
		for time.Now().Before(deadline) {
			i := rng.IntN(len(specs))
			w := max(0, window()-rng.IntN(3))
			ks := keys(rng, w, 8)
			var c counts
			var err error
			if rng.IntN(3) == 0 {
				_, c, err = n.readOld(stores[i], specs[i], ks, -1)
			} else {
				_, c, err = n.readV1(stores[i], specs[i], ks, -1)
			}
			rc.add(c)
			if err != nil {
				errs[1] = err
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	wg.Wait()
	rep.Counts.add(wc)
	rep.Counts.add(rc)
	rep.Stored = stored
	return errors.Join(errs[:]...)
}

// evict is one side of the eviction spec. As "writer" it first writes
// r.Batches batches of 4 new keys at once through r.Store (which has
// MaxBytes), sends "ready", then writes a batch every r.Pace for r.For; as
// "reader" it takes r.Off keys as written already and the writer's pace as
// given. Both read 8 random keys written lately, or evicted already, every
// 2 ms, and check every page served.
func (n *node) evict(s *hicachefile.Store, r request, rep *reply) error {
	rng := rand.New(rand.NewPCG(uint64(r.Seed), 3))
	next := 0
	writeBatch := func() error {
		ks := make([]string, 0, 4)
		for range 4 {
			ks = append(ks, fmt.Sprintf("e-%d", next))
			next++
		}
		ok, err := n.writeV1(s, r.Store, ks, 0)
		for _, b := range ok {
			if b {
				rep.Counts.Written++
			}
		}
		return err
	}
	if r.Role == "writer" {
		for range r.Batches {
			if err := writeBatch(); err != nil {
				return err
			}
		}
		r.Off = int64(next)
		n.event(r.ID, "ready", nil)
	}
	start := time.Now()
	written := func() int { return int(r.Off) + int(time.Since(start)/r.Pace)*4 }
	for time.Since(start) < r.For {
		if r.Role == "writer" && next < written() {
			if err := writeBatch(); err != nil {
				return err
			}
		}
		hi := written()
		lo := max(0, hi-evictWindow)
		ks := make([]string, 0, 8)
		for _, j := range rng.Perm(hi - lo)[:min(8, hi-lo)] {
			ks = append(ks, fmt.Sprintf("e-%d", lo+j))
		}
		_, c, err := n.readV1(s, r.Store, ks, -1)
		rep.Counts.add(c)
		if err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
	}
	rep.Stats = s.Stats()
	return nil
}

// evictWindow is how many of the latest keys the eviction spec reads.
const evictWindow = 200
