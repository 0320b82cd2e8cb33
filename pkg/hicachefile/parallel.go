//go:build linux

package hicachefile

import (
	"sync"
	"sync/atomic"
)

// minPieceBytes is the smallest read or write handed to an IO worker of its
// own: below it, a goroutine costs more than the copy it would share.
const minPieceBytes = 1 << 20

// piecePages returns how many pages of pageLen bytes one worker takes when n
// pages are spread over workers.
func piecePages(workers, n int, pageLen int64) int {
	per := max((int64(n)*pageLen+int64(workers)-1)/int64(workers), minPieceBytes)
	return int(max(1, min(int64(n), per/pageLen)))
}

// split cuts n pages of pageLen bytes into [lo, hi) pieces for workers, as
// piecePages does.
func split(workers, n int, pageLen int64) [][2]int {
	per := piecePages(workers, n, pageLen)
	var pieces [][2]int
	for lo := 0; lo < n; lo += per {
		pieces = append(pieces, [2]int{lo, min(n, lo+per)})
	}
	return pieces
}

// parallel calls fn(i) for every i in [0, n) on up to workers goroutines and
// returns when all calls have returned.
func parallel(workers, n int, fn func(i int)) {
	if workers <= 1 || n <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}
