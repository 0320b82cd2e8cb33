package hicachefile

import "hash/crc32"

// ioWindow is how many bytes move per system call when pages are checksummed
// on their way: small enough that a window is still in the CPU cache when
// its CRC32C is computed (after a read) or when the kernel copies it (after
// the CRC, for a write), so each byte crosses the memory bus once instead
// of twice. 1 MiB is a core's L2 on the machines measured (AMD EPYC, 1 MiB
// L2 per core); 256 KiB to 4 MiB all ran within noise of each other there.
const ioWindow = 1 << 20

// checksummed moves the buffers of pages, laid back to back from off,
// through move (a vectored read or write) in windows of at most ioWindow
// bytes, and returns the CRC32C of each page. A write checksums each window
// before moving it; a read checksums it after. On error the CRCs are
// incomplete.
func checksummed(pages [][][]byte, off int64, write bool, move func(bufs [][]byte, off int64) error) ([]uint32, error) {
	crcs := make([]uint32, len(pages))
	win := make([][]byte, 0, 16)
	owner := make([]int, 0, 16) // the page of each window segment
	size := 0
	flush := func() error {
		if write {
			for j, b := range win {
				crcs[owner[j]] = crc32.Update(crcs[owner[j]], castagnoli, b)
			}
		}
		if err := move(win, off); err != nil {
			return err
		}
		if !write {
			for j, b := range win {
				crcs[owner[j]] = crc32.Update(crcs[owner[j]], castagnoli, b)
			}
		}
		off += int64(size)
		win, owner, size = win[:0], owner[:0], 0
		return nil
	}
	for p, bufs := range pages {
		for _, b := range bufs {
			for len(b) > 0 {
				n := min(len(b), ioWindow-size)
				win = append(win, b[:n])
				owner = append(owner, p)
				size += n
				b = b[n:]
				if size == ioWindow {
					if err := flush(); err != nil {
						return crcs, err
					}
				}
			}
		}
	}
	if size > 0 {
		return crcs, flush()
	}
	return crcs, nil
}
