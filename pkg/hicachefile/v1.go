package hicachefile

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// v1Begin starts a V1 call: it checks that the store is open and the
// arguments, and returns the registered pool and the page buffers of
// hostIndices, bpp per key in GetPageBufferMeta order. On success the call
// holds s.life and must release it with s.life.RUnlock.
func (s *Store) v1Begin(keys []string, hostIndices []int64) (*poolInfo, [][]byte, error) {
	if err := s.enter(); err != nil {
		return nil, nil, err
	}
	pi := s.pool.Load()
	var bufs [][]byte
	var err error
	switch {
	case pi == nil:
		err = ErrNoPool
	case len(hostIndices) != len(keys)*pi.ps:
		err = fmt.Errorf("%w: %d keys need %d host indices (page size %d), got %d",
			ErrLength, len(keys), len(keys)*pi.ps, pi.ps, len(hostIndices))
	default:
		if bufs, err = pi.pool.PageBuffers(hostIndices); err != nil {
			err = fmt.Errorf("hicachefile: %w", err)
		}
	}
	if err != nil {
		s.life.RUnlock()
		return nil, nil, err
	}
	return pi, bufs, nil
}

// BatchSetV1 stores the pages at hostIndices (PageSize slots per key) in the
// registered pool under keys, moving bytes straight from pool memory to
// batch files with pwritev. It writes one batch file per MaxBatchFileBytes
// of pages and returns one bool per key.
//
// A key this store already holds as a V1 page the registered pool can
// load, or that repeats an earlier key of the call, is skipped and reported
// true; a key held only as an old-format file is written. An invalid key is false. When a
// batch file cannot be written, that file's keys and every later entry are
// false and the error is returned: the entries before it stand. Call-level
// problems (no pool, mismatched lengths, indices the pool rejects) return an
// error with every entry false.
func (s *Store) BatchSetV1(keys []string, hostIndices []int64) ([]bool, error) {
	ok := make([]bool, len(keys))
	pi, bufs, err := s.v1Begin(keys, hostIndices)
	if err != nil {
		return ok, err
	}
	defer s.life.RUnlock()

	// The distinct valid keys, each at its first position.
	first := make(map[string]int, len(keys))
	var cand []int
	var candKeys []string
	for i, k := range keys {
		if s.checkKey(k) != nil {
			continue
		}
		if _, dup := first[k]; dup {
			continue
		}
		first[k] = i
		cand = append(cand, i)
		candKeys = append(candKeys, k)
	}
	// Only this store's own V1 copies for this pool count as stored: a copy
	// written by a pool of another shape or dtype, or by another store,
	// could never be loaded, and a page held only as an old-format file is
	// written again as V1, so that it gains a checksum and an identity.
	// That takes no system call per key.
	locs, inV1 := s.lookup(candKeys, pi.fp, true)
	var pending []int
	for j, i := range cand {
		if inV1[j] && locs[j].fp == pi.fp {
			ok[i] = true
			s.stats.existed.Add(1)
			continue
		}
		pending = append(pending, i)
	}

	perFile := int(max(1, s.cfg.MaxBatchFileBytes/pi.pageLen))
	chunks := slices.Collect(slices.Chunk(pending, perFile))
	written := make(map[fileID]bool, len(chunks))
	f, err := s.writeChunks(pi, keys, bufs, chunks, written)
	s.evict(written)
	for _, chunk := range chunks[:f] {
		for _, i := range chunk {
			ok[i] = true
		}
	}
	if err != nil {
		s.stats.errors.Add(1)
		clear(ok[chunks[f][0]:])
		resolveRepeats(keys, ok, first, chunks[f][0])
		return ok, err
	}
	resolveRepeats(keys, ok, first, len(keys))
	return ok, nil
}

// writeChunks writes each chunk of key positions as one batch file and
// returns the position of the first chunk that failed, with its error, or
// len(chunks) and nil. The temp files are written in parallel: the IO
// workers take a whole file each, since writes to different files do not
// contend for one inode's lock, and split a lone chunk between them. The
// files are then renamed into place in chunk order, stopping at the first
// failure, so that no chunk after a failed one is ever visible, not even
// for a moment; their temp files are removed.
func (s *Store) writeChunks(pi *poolInfo, keys []string, bufs [][]byte, chunks [][]int, written map[fileID]bool) (int, error) {
	outer := min(s.workers, len(chunks))
	inner := max(1, s.workers/max(1, outer))
	tmps := make([]string, len(chunks))
	ents := make([][]indexEntry, len(chunks))
	errs := make([]error, len(chunks))
	var failed atomic.Int64
	failed.Store(int64(len(chunks)))
	parallel(outer, len(chunks), func(c int) {
		if int64(c) > failed.Load() {
			return
		}
		tmps[c], ents[c], errs[c] = s.writeBatch(pi, keys, bufs, chunks[c], inner)
		for errs[c] != nil {
			f := failed.Load()
			if int64(c) >= f || failed.CompareAndSwap(f, int64(c)) {
				break
			}
		}
	})
	f := int(failed.Load())
	// Commit in order: nothing after the first failure is ever visible.
	for c := range chunks {
		if c >= f {
			if errs[c] == nil && tmps[c] != "" {
				_ = s.sys.Unlinkat(s.v1fd(), tmps[c], 0)
			}
			continue
		}
		name := s.batchName()
		if err := s.commit(s.v1fd(), s.v1Dir, tmps[c], name); err != nil {
			f, errs[c] = c, err
			continue
		}
		s.idx.add(name, ents[c], pi.fp)
		var st unix.Stat_t
		if unix.Fstatat(s.v1fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW) == unix.ENOENT {
			s.idx.forgetFile(name) // cleared between the rename and add
		} else {
			id := fileID{name: name}
			s.lru.track(id, st.Size, time.Now().UnixNano())
			written[id] = true
		}
		s.stats.sets.Add(int64(len(chunks[c])))
		s.stats.setBytes.Add(int64(len(chunks[c])) * pi.pageLen)
	}
	if f == len(chunks) {
		return f, nil
	}
	return f, errs[f]
}

// resolveRepeats gives each repeated key before end its first copy's result.
func resolveRepeats(keys []string, ok []bool, first map[string]int, end int) {
	for i := range end {
		if j, seen := first[keys[i]]; seen && j != i {
			ok[i] = ok[j]
		}
	}
}

// writeBatch writes the pages of keys[i] for i in chunk as one batch file:
// the payload straight from pool memory, then the index and trailer, to a
// temp file renamed into place. A large payload is split between IO workers,
// each computing the CRC32C of its pages and writing them at their offset.
func (s *Store) writeBatch(pi *poolInfo, keys []string, bufs [][]byte, chunk []int, workers int) (string, []indexEntry, error) {
	entries := make([]indexEntry, len(chunk))
	for n, i := range chunk {
		entries[n] = indexEntry{key: keys[i], off: int64(n) * pi.pageLen, length: pi.pageLen}
	}
	page := func(n int) [][]byte { i := chunk[n]; return bufs[i*pi.bpp : (i+1)*pi.bpp] }
	pieces := split(workers, len(chunk), pi.pageLen)
	tmp, err := s.writeTemp(s.v1fd(), s.v1Dir, func(fd int) error {
		errs := make([]error, len(pieces))
		parallel(workers, len(pieces), func(p int) {
			lo, hi := pieces[p][0], pieces[p][1]
			pages := make([][][]byte, 0, hi-lo)
			for n := lo; n < hi; n++ {
				pages = append(pages, page(n))
			}
			crcs, err := checksummed(pages, entries[lo].off, true, func(b [][]byte, off int64) error {
				return s.sys.pwritev(fd, b, off)
			})
			for n := lo; n < hi; n++ {
				entries[n].crc = crcs[n-lo]
			}
			errs[p] = err
		})
		if err := errors.Join(errs...); err != nil {
			return err
		}
		return s.sys.pwritev(fd, [][]byte{appendIndex(nil, entries, pi.fp)}, int64(len(chunk))*pi.pageLen)
	})
	if err != nil {
		return "", nil, err
	}
	return tmp, entries, nil
}

// BatchGetV1 loads the page of each key into the pool at hostIndices
// (PageSize slots per key), moving bytes straight from storage into pool
// memory with preadv, and returns one bool per key.
//
// A page is accepted only when its CRC32C matches and it was written by a
// pool of the same shape, dtype and layout as the registered one, by a
// store of the same identity. A key with no batch entry but an old-format
// file of exactly PageBytes is read from that file, unless the key holds
// '_': such a name may be another store's (see the package documentation). Every key is tried: a missing, corrupt, mismatched or
// unreadable page makes only its own entry false, and the slots of a false
// entry hold unspecified bytes. Call-level problems (no pool, mismatched
// lengths, indices the pool rejects, two keys given the same slots) return
// an error with every entry false.
func (s *Store) BatchGetV1(keys []string, hostIndices []int64) ([]bool, error) {
	ok := make([]bool, len(keys))
	pi, bufs, err := s.v1Begin(keys, hostIndices)
	if err != nil {
		return ok, err
	}
	defer s.life.RUnlock()
	seen := make(map[int64]bool, len(keys))
	for i := range keys {
		first := hostIndices[i*pi.ps]
		if seen[first] {
			return ok, fmt.Errorf("%w: slot %d is the destination of two keys", ErrLength, first)
		}
		seen[first] = true
	}
	s.stats.gets.Add(int64(len(keys)))
	defer func() {
		hits := int64(0)
		for _, b := range ok {
			if b {
				hits++
			}
		}
		s.stats.hits.Add(hits)
		s.stats.getBytes.Add(hits * pi.pageLen)
		s.stats.misses.Add(int64(len(keys)) - hits)
	}()
	locs, found := s.lookup(keys, pi.fp, false)

	byFile := make(map[string][]int)
	for i, k := range keys {
		switch {
		case s.checkKey(k) != nil:
		case !found[i] && strings.Contains(k, "_"):
			// The old-format file of such a key may be another store's:
			// "k_x" of model "m" is "k" of model "x_m". A miss.
		case !found[i]:
			ok[i] = s.readOldV1(pi, k, hostIndices[i*pi.ps:(i+1)*pi.ps])
		case locs[i].fp != pi.fp || locs[i].length != pi.pageLen:
			s.stats.mismatch.Add(1)
		default:
			byFile[locs[i].file] = append(byFile[locs[i].file], i)
		}
	}
	// A copy that proves bad is dropped, and another copy of the key, if
	// another file holds one, takes its place: try those too.
	for range maxCopies {
		s.readBatches(pi, byFile, keys, locs, bufs, ok)
		clear(byFile)
		now, still := s.idx.get(keys, pi.fp)
		for i, l := range now {
			if !ok[i] && found[i] && still[i] && l != locs[i] && l.fp == pi.fp && l.length == pi.pageLen {
				locs[i] = l
				byFile[l.file] = append(byFile[l.file], i)
			}
		}
		if len(byFile) == 0 {
			break
		}
	}
	return ok, nil
}

// maxCopies bounds how many copies of one key a BatchGetV1 call tries.
const maxCopies = 4

// readOldV1 reads key's old-format file zero-copy into the page at indices,
// in flat-page order, and counts the outcome.
func (s *Store) readOldV1(pi *poolInfo, key string, indices []int64) bool {
	flat, err := pi.pool.FlatPageBuffers(indices)
	if err == nil {
		err = s.readOld(key, flat, pi.pageLen)
	}
	s.classify(err)
	return err == nil
}

// readRun is one preadv: pages that lie back to back in one batch file.
type readRun struct {
	fd     int
	direct directFile
	pages  []int // key positions, in file order
}

// readBatches reads the pages of keys[i] for the positions in byFile, each
// list held by the batch file named by its key, into their pool buffers,
// verifies each page, and sets ok. Pages that lie back to back in a file are
// read with one preadv; the reads are spread over the IO workers.
func (s *Store) readBatches(pi *poolInfo, byFile map[string][]int, keys []string, locs []location, bufs [][]byte, ok []bool) {
	page := func(i int) [][]byte { return bufs[i*pi.bpp : (i+1)*pi.bpp] }
	var runs []readRun
	total := 0
	for name, idx := range byFile {
		fd, st, err := s.openRegular(s.v1fd(), s.v1Dir, name)
		if err != nil {
			if err == unix.ENOENT {
				err = fmt.Errorf("%w: batch file %s is gone", ErrNotFound, name)
			}
			for _, i := range idx {
				s.finishPage(pi, keys[i], locs[i], 0, err)
			}
			continue
		}
		defer s.sys.Close(fd)
		direct := s.openDirect(name, &st)
		if direct.fd >= 0 {
			defer s.sys.Close(direct.fd)
		}
		slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(locs[a].off, locs[b].off) })
		for rest := idx; len(rest) > 0; {
			n := 1
			for n < len(rest) && locs[rest[n]].off == locs[rest[n-1]].off+pi.pageLen {
				n++
			}
			runs = append(runs, readRun{fd, direct, rest[:n]})
			rest = rest[n:]
		}
		total += len(idx)
	}
	// Cut runs into pieces of about an even share of the bytes, so that
	// every worker has work, but keep small reads whole.
	per := piecePages(s.workers, total, pi.pageLen)
	var pieces []readRun
	for _, r := range runs {
		for p := range slices.Chunk(r.pages, per) {
			pieces = append(pieces, readRun{r.fd, r.direct, p})
		}
	}
	parallel(s.workers, len(pieces), func(p int) {
		r := pieces[p]
		pages := make([][][]byte, len(r.pages))
		for n, i := range r.pages {
			pages[n] = page(i)
		}
		var direct int64 // bytes read direct, counted once the piece is kept
		read := func(b [][]byte, off int64) error { return s.sys.preadv(r.fd, b, off) }
		if r.direct.fits(pages, locs[r.pages[0]].off) {
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
		crcs, err := checksummed(pages, locs[r.pages[0]].off, false, read)
		if err != nil && len(r.pages) > 1 {
			direct = 0 // the pages are read again, one by one, below
		}
		defer func() { s.stats.directBytes.Add(direct) }()
		for n, i := range r.pages {
			if err != nil && len(r.pages) > 1 {
				// Find out page by page which of the run can be read.
				one, err := checksummed(pages[n:n+1], locs[i].off, false, read)
				ok[i] = s.finishPage(pi, keys[i], locs[i], one[0], err)
			} else {
				ok[i] = s.finishPage(pi, keys[i], locs[i], crcs[n], err)
			}
		}
	})
}

// finishPage checks a page that was read with the outcome readErr and
// CRC32C crc, counts it, and drops its index entry if the page is bad or
// gone. It reports whether the page is good.
func (s *Store) finishPage(pi *poolInfo, key string, loc location, crc uint32, readErr error) bool {
	err := readErr
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w: batch file %s ends inside the page of %q", ErrCorrupt, loc.file, key)
	}
	if err == nil {
		if crc != loc.crc {
			err = fmt.Errorf("%w: page of %q in %s has CRC32C %08x, want %08x", ErrCorrupt, key, loc.file, crc, loc.crc)
		}
	}
	s.classify(err)
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotFound) {
		s.idx.drop(key, loc)
	}
	if err == nil {
		s.lru.touch(fileID{name: loc.file})
	}
	return err == nil
}
