//go:build linux

package hicachefile

import (
	"errors"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/crc32c"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

// readConsecutive is checksummed for a run of whole pages whose buffers
// lie back to back in bufs, bpp per page of pageLen (at most ioWindow)
// bytes: each window of whole pages is read straight from bufs, with no
// copy of its slice headers, then checksummed page by page while in cache.
// tail comes in the last window's read: from the slot just past bufs when
// spare says bufs may use it (scratch room that no other run reads), else
// from a copy of that window's headers in w.iov.
func readConsecutive(bufs [][]byte, bpp int, pageLen int64, crcs []uint32, off int64, tail []byte, spare bool, w *window, read func(bufs [][]byte, off int64) error) error {
	n := len(bufs) / bpp
	per := int(max(1, ioWindow/pageLen)) // pages per window
	for lo := 0; lo < n; lo += per {
		hi := min(n, lo+per)
		iov := bufs[lo*bpp : hi*bpp]
		var err error
		switch {
		case hi < n || len(tail) == 0:
			err = read(iov, off)
		case spare:
			iov = bufs[lo*bpp : hi*bpp+1]
			iov[len(iov)-1] = tail
			err = read(iov, off)
			iov[len(iov)-1] = nil
		default:
			iov = append(append(w.iov[:0], iov...), tail)
			err = read(iov, off)
			clear(iov)
			w.iov = iov[:0]
		}
		if err != nil {
			return err
		}
		crc32c.Pages(bufs[lo*bpp:hi*bpp], bpp, crcs[lo:hi])
		off += int64(hi-lo) * pageLen
	}
	return nil
}

// sortByRef sorts key positions by their copy's file, then page. Keys of
// one batch usually arrive in that order, which it checks first, in one
// pass with no call per key.
func sortByRef(pos []int32, refs []index.Ref) {
	if len(pos) < 2 {
		return
	}
	prev := refs[pos[0]]
	for _, i := range pos[1:] {
		r := refs[i]
		if r.File < prev.File || r.File == prev.File && r.Page < prev.Page {
			heapSort(pos, func(a, b int32) bool {
				ra, rb := refs[a], refs[b]
				return ra.File < rb.File || ra.File == rb.File && ra.Page < rb.Page
			})
			return
		}
		prev = r
	}
}

// heapSort sorts pos by less in place, without allocating.
func heapSort(pos []int32, less func(a, b int32) bool) {
	down := func(root, n int) {
		for {
			child := 2*root + 1
			if child >= n {
				return
			}
			if child+1 < n && less(pos[child], pos[child+1]) {
				child++
			}
			if !less(pos[root], pos[child]) {
				return
			}
			pos[root], pos[child] = pos[child], pos[root]
			root = child
		}
	}
	n := len(pos)
	for i := n/2 - 1; i >= 0; i-- {
		down(i, n)
	}
	for i := n - 1; i > 0; i-- {
		pos[0], pos[i] = pos[i], pos[0]
		down(0, i)
	}
}

// readRun is one read: pages that lie back to back in one batch file.
type readRun struct {
	file   int // index in scratch.files
	fd     int
	direct directFile
	pages  []int32 // key positions, in file order
	// consecutive is set when pages are consecutive positions, as a
	// batch's keys are: their buffers and CRCs then lie back to back.
	consecutive bool
	// tail, when set, is read in the same preadv right after the pages:
	// the file's index entries, which follow the payload's last page.
	tail []byte
	// probe is set when the file's size and kind are taken from the
	// index, not from an fstat: a tail then ends one byte past the
	// file's indexed end (see readProbe).
	probe bool
}

// readRun reads one run of adjacent pages (and its tail) and records the
// CRC32C of each page in sc.crcs. A run that fails is read again page by
// page, so that only the pages that cannot be read fail; their keys get
// stDone (an I/O error) or stBadCopy (past the end of a truncated file).
// When the run's tail was lost, the whole file's keys fail in verifyFile.
// A run of a file no fstat checked (probe) that ends early or finds no
// regular file returns that error instead: the caller records it as the
// file's, and the whole file is settled in verifyFile (settleProbed).
func (s *Store) readRun(pi *poolInfo, bufs [][]byte, sc *scratch, r readRun, w *window) error {
	page := func(j int) [][]byte { i := int(r.pages[j]); return bufs[i*pi.bpp : (i+1)*pi.bpp] }
	var direct int64 // bytes read direct, counted once the piece is kept
	read := func(b [][]byte, off int64) error { return s.sys.preadv(r.fd, b, off) }
	if r.probe && r.tail != nil {
		// The read that carries the tail probes past the file's end.
		read = func(b [][]byte, off int64) error {
			if n := len(b); n > 0 && len(b[n-1]) == len(r.tail) && unsafe.SliceData(b[n-1]) == unsafe.SliceData(r.tail) {
				return readProbe(s.sys.Preadv, r.fd, b, off)
			}
			return s.sys.preadv(r.fd, b, off)
		}
	}
	off := int64(sc.refs[r.pages[0]].Page) * pi.pageLen
	fits := r.direct.fits(len(r.pages), page, off)
	if fits {
		read = func(b [][]byte, off int64) error {
			err := s.sys.preadv(r.direct.fd, b, off)
			if err == nil {
				for _, x := range b {
					direct += int64(len(x))
				}
				return nil
			}
			// The kernel refused the direct read (a truncated file ends
			// unaligned, say): read through the page cache instead.
			return s.sys.preadv(r.fd, b, off)
		}
	}
	// The CRCs go straight to sc.crcs when the run's keys are consecutive,
	// as a batch's are.
	p0, n := int(r.pages[0]), len(r.pages)
	consecutive := r.consecutive
	var got []uint32
	if consecutive {
		got = sc.crcs[p0 : p0+n : p0+n]
	} else {
		got = make([]uint32, n)
	}
	var err error
	pageLen := pageBytes(page(0))
	switch {
	case fits && pageLen*int64(n) >= pipelineBytes:
		err = checksummedPipelined(n, page, got, off, r.tail, directWindow, read)
	case consecutive && !fits && pageLen <= ioWindow && (w.serial || pageLen*int64(n) < pipelineBytes):
		// The slot past the call's last buffer is scratch room (v1Begin
		// keeps it): the tail of the run that ends there may use it.
		spare := (p0+n)*pi.bpp == len(bufs) && cap(bufs) > len(bufs)
		err = readConsecutive(bufs[p0*pi.bpp:(p0+n)*pi.bpp], pi.bpp, pageLen, got, off, r.tail, spare, w, read)
	default:
		err = checksummed(n, page, got, off, false, w, r.tail, read)
	}
	if err != nil {
		if r.tail != nil {
			// The entries were not read: the whole file's keys fail, and
			// are counted, in verifyFile.
			sc.files[r.file].err = err
			return nil
		}
		if r.probe && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, unix.ESPIPE) || errors.Is(err, unix.EISDIR)) {
			return err // not a regular file of the indexed size, maybe
		}
		for j, i := range r.pages {
			if len(r.pages) > 1 {
				// Find out page by page which of the run can be read.
				err = checksummed(1, func(int) [][]byte { return page(j) }, got[j:j+1], int64(sc.refs[i].Page)*pi.pageLen, false, w, nil, read)
			}
			switch {
			case err == nil:
				sc.crcs[i] = got[j]
			case sc.predicted:
				sc.state[i] = stAgain // settled by a lookup round
			case errors.Is(err, io.ErrUnexpectedEOF):
				s.stats.corrupt.Add(1) // past the end of a truncated file
				sc.state[i] = stBadCopy
			default:
				s.stats.errors.Add(1)
				sc.state[i] = stDone
			}
		}
		direct = 0
		return nil
	}
	s.stats.directBytes.Add(direct)
	if &got[0] != &sc.crcs[p0] {
		for j, i := range r.pages {
			sc.crcs[i] = got[j]
		}
	}
	return nil
}
