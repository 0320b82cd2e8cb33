//go:build linux

package hicachefile

import (
	"slices"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/crc32c"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

// writeBuf is the reusable memory of one writeBatch: its iovecs and the
// encoded index, identity and trailer.
type writeBuf struct {
	iov [][]byte
	idx []byte
}

// writeBatch writes the pages of keys[i] for i in chunk as one batch file
// under a temp name: the payload straight from pool memory, then the index
// and trailer, encoded in place into a reused buffer. A payload of up to
// ioWindow bytes is checksummed first and written with the index in one
// pwritev; a larger one moves in windows, each checksummed while it is in
// cache, split between IO workers.
func (s *Store) writeBatch(pi *poolInfo, v1fd int, keys []string, hashes []uint64, bufs [][]byte, chunk []int32, workers int) (batch, error) {
	n := len(chunk)
	b := batch{n: n, hashes: make([]uint64, n), ents: make([]uint32, n), pages: make([]uint32, n)}
	wb := writeBufPool.Get().(*writeBuf)
	defer func() {
		clear(wb.iov[:cap(wb.iov)]) // drop references to pool memory
		if cap(wb.idx) <= 8<<20 && cap(wb.iov) <= 1<<16 {
			writeBufPool.Put(wb)
		}
	}()
	need := 0
	for _, i := range chunk {
		need += entryFixed + len(keys[i])
	}
	idx := slices.Grow(wb.idx[:0], need+len(s.ident)+trailerSize)
	for j, i := range chunk {
		b.hashes[j], b.ents[j], b.pages[j] = hashes[i], uint32(len(idx)), uint32(j)
		idx = batchfile.AppendEntry(idx, keys[i], int64(j)*pi.pageLen, pi.pageLen)
	}
	ent := len(idx)
	payload := int64(n) * pi.pageLen
	b.meta = index.Meta{FP: pi.fp, IndexOff: payload, PageLen: pi.pageLen}
	b.size = payload + int64(ent) + int64(len(s.ident)) + trailerSize
	b.meta.Size = b.size
	page := func(j int) [][]byte { i := int(chunk[j]); return bufs[i*pi.bpp : (i+1)*pi.bpp] }
	setCRC := func(j int, crc uint32) { batchfile.SetEntryCRC(idx[b.ents[j]:], len(keys[chunk[j]]), crc) }
	var err error
	b.tmp, err = s.openBatchTemp(v1fd, b.size)
	if err != nil {
		return b, err
	}
	b.tmp, err = s.fillTemp(b.tmp, func(fd int) error {
		if payload <= ioWindow || workers <= 1 && payload <= 4*ioWindow {
			iov := slices.Grow(wb.iov[:0], n*pi.bpp+1)
			for j := range n {
				iov = append(iov, page(j)...)
			}
			// The CRCs a block of pages at a time, three pages at once
			// (crc32c.Pages), into an array on the stack.
			var crcs [48]uint32
			for lo := 0; lo < n; lo += len(crcs) {
				hi := min(n, lo+len(crcs))
				crc32c.Pages(iov[lo*pi.bpp:hi*pi.bpp], pi.bpp, crcs[:hi-lo])
				for j, crc := range crcs[:hi-lo] {
					setCRC(lo+j, crc)
				}
			}
			idx = batchfile.AppendTrailer(idx, 0, n, payload, pi.poolFP, s.ident)
			b.meta.Tag = batchfile.Tag(idx)
			wb.iov, wb.idx = append(iov, idx), idx
			return s.sys.pwritev(fd, wb.iov, 0)
		}
		pieces := split(workers, n, pi.pageLen)
		errs := make([]error, len(pieces))
		crcs := make([]uint32, n)
		parallel(workers, len(pieces), func(p int) {
			lo, hi := pieces[p][0], pieces[p][1]
			errs[p] = checksummed(hi-lo, func(j int) [][]byte { return page(lo + j) }, crcs[lo:hi], int64(lo)*pi.pageLen, true, new(window), nil,
				func(bufs [][]byte, off int64) error { return s.sys.pwritev(fd, bufs, off) })
		})
		if err := joinDistinct(errs); err != nil {
			return err
		}
		for j, crc := range crcs {
			setCRC(j, crc)
		}
		idx = batchfile.AppendTrailer(idx, 0, n, payload, pi.poolFP, s.ident)
		wb.idx = idx
		b.meta.Tag = batchfile.Tag(idx)
		return s.sys.pwritev(fd, [][]byte{idx}, payload)
	})
	// The inode the index will hold, which the rename keeps, so that a
	// polling check that finds another (a foreign file renamed over it)
	// forgets the file. A watching store needs it only for a file it
	// renames into place: the one event of an unnamed file's link is
	// known as its own (expectOwn), and any other event for the name has
	// the file loaded again.
	var st unix.Stat_t
	if err == nil && (b.tmp.name != "" || s.poll.Load()) && unix.Fstat(b.tmp.fd, &st) == nil {
		b.meta.Ino = st.Ino
	}
	return b, err
}

// openBatchTemp opens the file a batch file of size bytes is written to
// in the V1 directory: a file with no name (openUnnamed) where the store
// may, else a temp file (openTemp).
func (s *Store) openBatchTemp(v1fd int, size int64) (tempFile, error) {
	if s.unnamedWrites() {
		if t, ok, err := s.openUnnamed(v1fd, s.v1Dir, size); ok || err != nil {
			return t, err
		}
	}
	return s.openTemp(v1fd, s.v1Dir, size)
}
