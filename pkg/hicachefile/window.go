//go:build linux

package hicachefile

import "hash/crc32"

// ioWindow is how many bytes move per system call when pages are checksummed
// on their way: small enough that a window is still in the CPU cache when
// its CRC32C is computed (after a read) or when the kernel copies it (after
// the CRC, for a write), so each byte crosses the memory bus once instead
// of twice.
const ioWindow = 1 << 20

// window is the reusable working memory of checksummed.
type window struct {
	iov   [][]byte
	owner []int32 // the page of each iov segment
	// serial keeps a large read from checksumming on a goroutine of its
	// own (checksummedPipelined): an IO worker that shares the read with
	// others has no spare core to overlap on, and sums each window itself
	// right after reading it, while it is in its core's cache.
	serial bool
}

// checksummed moves n pages, page(j) being the buffers of page j, laid back
// to back from off, through move (a vectored read or write) in windows of at
// most ioWindow bytes, and sets crcs[j] to the CRC32C of page j. A write
// checksums each window before moving it; a read checksums it after, while
// it is still in cache. tail, when not nil, moves right after the last page
// in the last window, unchecksummed. On error the CRCs are incomplete.
func checksummed(n int, page func(j int) [][]byte, crcs []uint32, off int64, write bool, w *window, tail []byte, move func(bufs [][]byte, off int64) error) error {
	clear(crcs[:n])
	if !write && !w.serial && n > 0 && pageBytes(page(0))*int64(n) >= pipelineBytes {
		return checksummedPipelined(n, page, crcs, off, tail, ioWindow, move)
	}
	w.iov, w.owner = w.iov[:0], w.owner[:0]
	size := 0
	flush := func() error {
		if write {
			w.sum(crcs)
		}
		if err := move(w.iov, off); err != nil {
			return err
		}
		if !write {
			w.sum(crcs)
		}
		off += int64(size)
		clear(w.iov)
		w.iov, w.owner, size = w.iov[:0], w.owner[:0], 0
		return nil
	}
	for p := range n {
		for _, b := range page(p) {
			for len(b) > 0 {
				k := min(len(b), ioWindow-size)
				w.iov = append(w.iov, b[:k])
				w.owner = append(w.owner, int32(p))
				size += k
				b = b[k:]
				if size == ioWindow {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
	}
	if len(tail) > 0 {
		w.iov = append(w.iov, tail)
		w.owner = append(w.owner, -1)
		size += len(tail)
	}
	if size > 0 {
		return flush()
	}
	return nil
}

// sum adds each segment of the window to the CRC32C of its page.
func (w *window) sum(crcs []uint32) {
	for j, b := range w.iov {
		if p := w.owner[j]; p >= 0 {
			crcs[p] = crc32.Update(crcs[p], castagnoli, b)
		}
	}
}

// pipelineBytes is the size from which a read checksums each window on a
// goroutine of its own while the next window is read: the CRC32C of large
// pages then overlaps the copy from the page cache (or the device) instead
// of following it.
const pipelineBytes = 4 * ioWindow

// directWindow is the window of a large O_DIRECT read: the device fills
// pool memory by DMA, so no window is in cache to keep there, and larger
// requests keep more of the device busy.
const directWindow = 8 * ioWindow

// checksummedPipelined is checksummed for a large read, in windows of
// winSize bytes: the reader fills windows in turn (three, so that it never waits for the checksummer while
// one is being summed), and a second goroutine checksums each one as soon
// as it is read.
func checksummedPipelined(n int, page func(j int) [][]byte, crcs []uint32, off int64, tail []byte, winSize int, move func(bufs [][]byte, off int64) error) error {
	clear(crcs[:n])
	const depth = 3
	var wins [depth]window
	full := make(chan int, depth)
	free := make(chan int, depth)
	for i := range depth {
		free <- i
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range full {
			wins[i].sum(crcs)
			free <- i
		}
	}()
	var err error
	cur := <-free
	w := &wins[cur]
	w.iov, w.owner = w.iov[:0], w.owner[:0]
	size := 0
	flush := func() {
		if err == nil {
			err = move(w.iov, off)
		}
		if err != nil {
			return
		}
		off += int64(size)
		full <- cur
		cur = <-free
		w = &wins[cur]
		w.iov, w.owner, size = w.iov[:0], w.owner[:0], 0
	}
	for p := 0; p < n && err == nil; p++ {
		for _, b := range page(p) {
			for len(b) > 0 && err == nil {
				k := min(len(b), winSize-size)
				w.iov = append(w.iov, b[:k])
				w.owner = append(w.owner, int32(p))
				size += k
				b = b[k:]
				if size == winSize {
					flush()
				}
			}
		}
	}
	if err == nil && len(tail) > 0 {
		w.iov = append(w.iov, tail)
		w.owner = append(w.owner, -1)
		size += len(tail)
	}
	if err == nil && size > 0 {
		flush()
	}
	close(full)
	<-done
	return err
}

// pageBytes returns the bytes of a page's buffers.
func pageBytes(bufs [][]byte) int64 {
	n := int64(0)
	for _, b := range bufs {
		n += int64(len(b))
	}
	return n
}
