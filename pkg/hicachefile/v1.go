package hicachefile

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
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

// The states of a key in a V1 call (scratch.state).
const (
	stNone     uint8 = iota // not found (yet)
	stRead                  // a copy to read: scratch.refs and metas
	stDone                  // answered
	stBadCopy               // the copy proved bad and was dropped: try another
	stGone                  // the copy's file is gone: look again after a refresh
	stMismatch              // only copies another pool wrote
	stInvalid               // not a valid key
	stRepeat                // repeats an earlier key of the call (BatchSetV1)
	stStored                // already stored (BatchSetV1)
)

// BatchSetV1 stores the pages at hostIndices (PageSize slots per key) in the
// registered pool under keys, moving bytes straight from pool memory to
// batch files with pwritev. It writes one batch file per MaxBatchFileBytes
// of pages and returns one bool per key.
//
// A key this store already holds as a V1 page the registered pool can
// load, or that repeats an earlier key of the call, is skipped and reported
// true; a key held only as an old-format file is written. An invalid key is
// false. When a batch file cannot be written, that file's keys and every
// later entry are false and the error is returned: the entries before it
// stand. Call-level problems (no pool, mismatched lengths, indices the pool
// rejects) return an error with every entry false.
//
// It makes no system call per key: at most one read(2) of pending inotify
// events per call, then per batch file a create, the writes (one pwritev
// per 1024 buffers or MiB of pages, and one for the index), a close and a
// rename.
func (s *Store) BatchSetV1(keys []string, hostIndices []int64) ([]bool, error) {
	ok := make([]bool, len(keys))
	pi, bufs, err := s.v1Begin(keys, hostIndices)
	if err != nil {
		return ok, err
	}
	defer s.life.RUnlock()
	sc := getScratch(len(keys))
	defer putScratch(sc)

	// The distinct valid keys, each at its first position: a small
	// open-addressing table of positions by digest. A repeat records its
	// first position in sc.offs.
	size := 1 << bits.Len(uint(2*len(keys)))
	if cap(sc.table) < size {
		sc.table = make([]int32, size)
	}
	table := sc.table[:size]
	for i := range table {
		table[i] = -1
	}
	mask := uint64(size - 1)
	for i, k := range keys {
		if s.checkKey(k) != nil {
			sc.state[i], sc.hashes[i] = stInvalid, 0
			continue
		}
		h := s.idx.Hash(k)
		sc.hashes[i], sc.state[i] = h, stNone
		p := h & mask
		for ; table[p] >= 0; p = (p + 1) & mask {
			if j := table[p]; sc.hashes[j] == h && keys[j] == k {
				sc.state[i], sc.offs[i] = stRepeat, int64(j)
				break
			}
		}
		if sc.state[i] == stNone {
			table[p] = int32(i)
		}
	}
	// Only this store's own V1 copies for this pool count as stored: a copy
	// written by a pool of another shape or dtype, or by another store,
	// could never be loaded, and a page held only as an old-format file is
	// written again as V1, so that it gains a checksum and an identity.
	// That takes no system call per key: the index is brought up to date
	// by the pending inotify events, and only a polling store checks that
	// the files of the keys found still exist. A key not found is simply
	// written; no listing is needed to learn that it is new.
	s.refresh(false)
	s.idx.Lookup(sc.hashes, pi.fp, sc.refs, nil)
	s.idx.Meta(sc.refs, sc.metas)
	stored := func(i int) bool {
		return sc.state[i] == stNone && sc.refs[i].File != 0 && sc.metas[i].FP == pi.fp
	}
	if s.poll.Load() {
		checked := make([]bool, len(keys))
		for i := range keys {
			checked[i] = stored(i)
		}
		if s.verifyFiles(sc.refs, checked) {
			s.idx.Lookup(sc.hashes, pi.fp, sc.refs, nil)
			s.idx.Meta(sc.refs, sc.metas)
		}
	}
	pending := sc.order[:0]
	for i := range keys {
		switch {
		case stored(i):
			sc.state[i] = stStored
			ok[i] = true
			s.stats.existed.Add(1)
		case sc.state[i] == stNone:
			pending = append(pending, int32(i))
		}
	}

	perFile := int(max(1, s.cfg.MaxBatchFileBytes/pi.pageLen))
	nChunks := (len(pending) + perFile - 1) / perFile
	chunk := func(c int) []int32 { return pending[c*perFile : min(len(pending), (c+1)*perFile)] }
	var written map[fileID]bool
	if s.lru.on {
		written = make(map[fileID]bool, nChunks)
	}
	f, err := s.writeChunks(pi, keys, sc.hashes, bufs, nChunks, chunk, written)
	s.evict(written)
	for c := range f {
		for _, i := range chunk(c) {
			ok[i] = true
		}
	}
	end := len(keys)
	if err != nil {
		s.stats.errors.Add(1)
		end = int(chunk(f)[0])
		clear(ok[end:])
	}
	// A repeat has its first copy's result.
	for i := range end {
		if sc.state[i] == stRepeat {
			ok[i] = ok[sc.offs[i]]
		}
	}
	return ok, err
}

// writeChunks writes each of the n chunks of key positions as one batch
// file and returns the position of the first chunk that failed, with its
// error, or n and nil. The temp files are written in parallel: the IO
// workers take a whole file each, since writes to different files do not
// contend for one inode's lock, and split a lone chunk between them. The
// files are then renamed into place in chunk order, stopping at the first
// failure, so that no chunk after a failed one is ever visible, not even
// for a moment; their temp files are removed.
func (s *Store) writeChunks(pi *poolInfo, keys []string, hashes []uint64, bufs [][]byte, n int, chunk func(c int) []int32, written map[fileID]bool) (int, error) {
	if n == 1 {
		// The common case, without the bookkeeping of several files.
		b, err := s.writeBatch(pi, keys, hashes, bufs, chunk(0), s.workers)
		if err == nil {
			err = s.commitBatch(pi, b, written)
		}
		if err != nil {
			return 0, err
		}
		return 1, nil
	}
	outer := min(s.workers, n)
	inner := max(1, s.workers/max(1, outer))
	batches := make([]batch, n)
	errs := make([]error, n)
	var failed atomic.Int64
	failed.Store(int64(n))
	parallel(outer, n, func(c int) {
		if int64(c) > failed.Load() {
			return
		}
		batches[c], errs[c] = s.writeBatch(pi, keys, hashes, bufs, chunk(c), inner)
		for errs[c] != nil {
			f := failed.Load()
			if int64(c) >= f || failed.CompareAndSwap(f, int64(c)) {
				break
			}
		}
	})
	f := int(failed.Load())
	// Commit in order: nothing after the first failure is ever visible.
	for c := range n {
		if c >= f {
			if errs[c] == nil && batches[c].tmp != "" {
				_ = s.sys.Unlinkat(s.v1fd(), batches[c].tmp, 0)
			}
			continue
		}
		if err := s.commitBatch(pi, batches[c], written); err != nil {
			f, errs[c] = c, err
		}
	}
	if f == n {
		return f, nil
	}
	return f, errs[f]
}

// batch is a batch file written under its temp name, ready to commit.
type batch struct {
	tmp    string
	pages  int
	hashes []uint64 // digest of each key, for the index
	ents   []uint32 // offset of each key's entry in the file's index
	meta   index.Meta
	size   int64
}

// commitBatch renames b into place and adds its pages to the index. It
// holds s.commit shared, so that Clear, which takes it exclusively, never
// runs between the rename and the add: a file Clear removed is never left
// in the index.
func (s *Store) commitBatch(pi *poolInfo, b batch, written map[fileID]bool) error {
	name := s.batchName()
	s.commitMu.RLock()
	defer s.commitMu.RUnlock()
	s.inflightBegin(name)
	if err := s.commit(s.v1fd(), s.v1Dir, b.tmp, name); err != nil {
		s.inflightEnd(name)
		return err
	}
	s.idx.AddHashed(name, b.meta, b.hashes, b.ents)
	if s.inflightEnd(name) {
		s.idx.Forget(name) // removed already, by another process's Clear
	} else if s.lru.on {
		// Another process's Clear may have removed the file between the
		// rename and the add: the bound needs to know.
		var st unix.Stat_t
		if unix.Fstatat(s.v1fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW) == unix.ENOENT {
			s.idx.Forget(name)
		} else {
			id := fileID{name: name}
			s.lru.track(id, b.size, time.Now().UnixNano())
			written[id] = true
		}
	}
	s.stats.sets.Add(int64(b.pages))
	s.stats.setBytes.Add(int64(b.pages) * pi.pageLen)
	return nil
}

// inflightBegin records that this store is committing the batch file name.
func (s *Store) inflightBegin(name string) {
	s.inflight.mu.Lock()
	s.inflight.names[name] = false
	s.inflight.mu.Unlock()
}

// inflightEnd ends the commit of name and reports whether its removal was
// seen meanwhile.
func (s *Store) inflightEnd(name string) bool {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	gone := s.inflight.names[name]
	delete(s.inflight.names, name)
	return gone
}

// goneInFlight reports whether name, whose removal an event reports, is
// being committed by this store, and if so marks it for its commit to
// forget.
func (s *Store) goneInFlight(name string) bool {
	s.inflight.mu.Lock()
	defer s.inflight.mu.Unlock()
	if _, ok := s.inflight.names[name]; ok {
		s.inflight.names[name] = true
		return true
	}
	return false
}

// writeBatch writes the pages of keys[i] for i in chunk as one batch file
// under a temp name: the payload straight from pool memory, then the index
// and trailer. A payload of up to ioWindow bytes is checksummed first and
// written with the index in one pwritev; a larger one moves in windows,
// each checksummed while it is in cache, split between IO workers.
func (s *Store) writeBatch(pi *poolInfo, keys []string, hashes []uint64, bufs [][]byte, chunk []int32, workers int) (batch, error) {
	n := len(chunk)
	b := batch{pages: n, hashes: make([]uint64, n), ents: make([]uint32, n)}
	entries := make([]indexEntry, n)
	ent := uint32(0)
	for j, i := range chunk {
		entries[j] = indexEntry{key: keys[i], off: int64(j) * pi.pageLen, length: pi.pageLen}
		b.hashes[j], b.ents[j] = hashes[i], ent
		ent += uint32(entryFixed + len(keys[i]))
	}
	payload := int64(n) * pi.pageLen
	b.meta = index.Meta{FP: pi.fp, IndexOff: payload, PageLen: pi.pageLen}
	page := func(j int) [][]byte { i := int(chunk[j]); return bufs[i*pi.bpp : (i+1)*pi.bpp] }
	var err error
	b.tmp, err = s.writeTemp(s.v1fd(), s.v1Dir, func(fd int) error {
		if payload <= ioWindow || workers <= 1 && payload <= 4*ioWindow {
			iov := make([][]byte, 0, n*pi.bpp+1)
			for j := range n {
				crc := uint32(0)
				for _, x := range page(j) {
					crc = crc32.Update(crc, castagnoli, x)
					iov = append(iov, x)
				}
				entries[j].crc = crc
			}
			idx := appendIndex(nil, entries, pi.fp)
			b.size = payload + int64(len(idx))
			return s.sys.pwritev(fd, append(iov, idx), 0)
		}
		pieces := split(workers, n, pi.pageLen)
		errs := make([]error, len(pieces))
		crcs := make([]uint32, n)
		parallel(workers, len(pieces), func(p int) {
			lo, hi := pieces[p][0], pieces[p][1]
			errs[p] = checksummed(hi-lo, func(j int) [][]byte { return page(lo + j) }, crcs[lo:hi], int64(lo)*pi.pageLen, true, new(window),
				func(bufs [][]byte, off int64) error { return s.sys.pwritev(fd, bufs, off) })
		})
		if err := errors.Join(errs...); err != nil {
			return err
		}
		for j := range entries {
			entries[j].crc = crcs[j]
		}
		idx := appendIndex(nil, entries, pi.fp)
		b.size = payload + int64(len(idx))
		return s.sys.pwritev(fd, [][]byte{idx}, payload)
	})
	return b, err
}

// BatchGetV1 loads the page of each key into the pool at hostIndices
// (PageSize slots per key), moving bytes straight from storage into pool
// memory with preadv, and returns one bool per key.
//
// A page is accepted only when its key matches the entry in its batch
// file's own index, its CRC32C matches, and it was written by a pool of the
// same shape, dtype and layout as the registered one, by a store of the
// same identity. A key with no batch entry but an old-format file of
// exactly PageBytes is read from that file, unless the key holds '_': such
// a name may be another store's (see the package documentation). Every key
// is tried: a missing, corrupt, mismatched or unreadable page makes only
// its own entry false, and the slots of a false entry hold unspecified
// bytes. Call-level problems (no pool, mismatched lengths, indices the pool
// rejects, two keys given the same slots) return an error with every entry
// false.
//
// For the pages it finds, it makes per batch file an open, one read of the
// keys' index entries, one preadv per run of adjacent pages (per 1024
// buffers or MiB), and a close: no system call per key, and none when the
// pages are all found.
func (s *Store) BatchGetV1(keys []string, hostIndices []int64) ([]bool, error) {
	ok := make([]bool, len(keys))
	pi, bufs, err := s.v1Begin(keys, hostIndices)
	if err != nil {
		return ok, err
	}
	defer s.life.RUnlock()
	sc := getScratch(len(keys))
	defer putScratch(sc)
	if err := sc.distinctSlots(hostIndices, pi); err != nil {
		return ok, err
	}
	s.stats.gets.Add(int64(len(keys)))
	for i, k := range keys {
		sc.hashes[i], sc.state[i] = s.idx.Hash(k), stNone
		if s.checkKey(k) != nil {
			sc.state[i] = stInvalid
		}
	}
	refreshed := false
	for range maxCopies {
		s.idx.Lookup(sc.hashes, pi.fp, sc.refs, nil)
		s.idx.Meta(sc.refs, sc.metas)
		read := sc.order[:0]
		missing := false
		for i := range keys {
			switch st := sc.state[i]; {
			case st == stDone || st == stInvalid:
			case sc.refs[i].File == 0:
				sc.state[i], missing = stNone, true
			case sc.metas[i].FP != pi.fp || sc.metas[i].PageLen != pi.pageLen:
				sc.state[i], missing = stMismatch, true // a loadable copy may have arrived
			default:
				sc.state[i] = stRead
				read = append(read, int32(i))
			}
		}
		retry := false
		if len(read) > 0 {
			s.readFiles(pi, keys, bufs, sc, read, ok)
			for _, i := range read {
				retry = retry || sc.state[i] == stBadCopy || sc.state[i] == stGone
			}
		}
		if missing && !refreshed || retry {
			s.refresh(true)
			refreshed = true
			continue
		}
		break
	}
	hits := int64(0)
	for i, k := range keys {
		switch sc.state[i] {
		case stNone:
			// The old-format file of a key with '_' may be another
			// store's: "k_x" of model "m" is "k" of model "x_m". A miss.
			if !strings.Contains(k, "_") {
				ok[i] = s.readOldV1(pi, k, hostIndices[i*pi.ps:(i+1)*pi.ps])
			}
		case stMismatch:
			s.stats.mismatch.Add(1)
		}
		if ok[i] {
			hits++
		}
	}
	s.stats.hits.Add(hits)
	s.stats.getBytes.Add(hits * pi.pageLen)
	s.stats.misses.Add(int64(len(keys)) - hits)
	return ok, nil
}

// maxCopies bounds how many rounds of lookups a BatchGetV1 call makes: one
// more for each copy of a key that proves bad.
const maxCopies = 4

// distinctSlots checks that no two keys of a V1 read share a destination
// page, with a bitmap of the pool's pages.
func (sc *scratch) distinctSlots(hostIndices []int64, pi *poolInfo) error {
	words := (pi.pages + 63) / 64
	if cap(sc.slots) < words {
		sc.slots = make([]uint64, words)
	}
	bm := sc.slots[:words]
	var err error
	n := len(hostIndices) / pi.ps
	i := 0
	for ; i < n; i++ {
		pg := hostIndices[i*pi.ps] / int64(pi.ps)
		if bm[pg/64]&(1<<(pg%64)) != 0 {
			err = fmt.Errorf("%w: slot %d is the destination of two keys", ErrLength, hostIndices[i*pi.ps])
			break
		}
		bm[pg/64] |= 1 << (pg % 64)
	}
	for j := range i {
		pg := hostIndices[j*pi.ps] / int64(pi.ps)
		bm[pg/64] = 0
	}
	return err
}

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

// readRun is one read: pages that lie back to back in one batch file.
type readRun struct {
	fd     int
	direct directFile
	pages  []int32 // key positions, in file order
}

// readFiles reads the pages of the keys at positions read (state stRead,
// with refs and metas set) into their pool buffers and verifies them. Per
// batch file it opens the file, reads back the keys' entries from the
// file's own index (checking the full key), then reads each run of
// adjacent pages with one preadv per window, checksumming each window
// while it is in cache. Large reads are spread over the IO workers. It
// leaves each key stDone (ok set when good), stBadCopy or stGone.
func (s *Store) readFiles(pi *poolInfo, keys []string, bufs [][]byte, sc *scratch, read []int32, ok []bool) {
	sortByRef(read, sc.refs)
	runs := sc.runs[:0]
	var fds [8]int
	open := fds[:0]
	defer func() {
		for _, fd := range open {
			_ = s.sys.Close(fd)
		}
	}()
	total := 0
	for len(read) > 0 {
		id := sc.refs[read[0]].File
		n := 1
		for n < len(read) && sc.refs[read[n]].File == id {
			n++
		}
		group := read[:n]
		read = read[n:]
		fd, direct := s.openBatch(id, group, sc)
		if fd < 0 {
			continue
		}
		open = append(open, fd)
		if direct.fd >= 0 {
			open = append(open, direct.fd)
		}
		if err := s.readEntries(fd, sc.metas[group[0]], keys, group, sc, pi.pageLen); err != nil {
			s.failGroup(group, sc, fmt.Errorf("hicachefile: read index entries: %w", err))
			continue
		}
		// The good keys, in file order, cut into runs of adjacent pages.
		good := group[:0]
		for _, i := range group {
			if sc.state[i] == stBadCopy {
				s.idx.Drop(sc.hashes[i], sc.refs[i])
				continue
			}
			good = append(good, i)
		}
		sortByOff(good, sc.offs)
		for len(good) > 0 {
			k := 1
			for k < len(good) && sc.offs[good[k]] == sc.offs[good[k-1]]+pi.pageLen {
				k++
			}
			runs = append(runs, readRun{fd, direct, good[:k]})
			total += k
			good = good[k:]
		}
	}
	sc.runs = runs
	if total == 0 {
		return
	}
	var hit atomic.Int64
	if s.workers <= 1 || int64(total)*pi.pageLen < 2*minPieceBytes {
		w := window{iov: sc.iov, owner: sc.owner}
		for _, r := range runs {
			s.readRun(pi, keys, bufs, sc, r, &w, ok, &hit)
		}
		sc.iov, sc.owner = w.iov, w.owner
	} else {
		// Cut runs into pieces of about an even share of the bytes, so that
		// every worker has work, but keep small reads whole.
		per := piecePages(s.workers, total, pi.pageLen)
		var pieces []readRun
		for _, r := range runs {
			for lo := 0; lo < len(r.pages); lo += per {
				pieces = append(pieces, readRun{r.fd, r.direct, r.pages[lo:min(len(r.pages), lo+per)]})
			}
		}
		parallel(s.workers, len(pieces), func(p int) {
			s.readRun(pi, keys, bufs, sc, pieces[p], new(window), ok, &hit)
		})
	}
	if s.lru.on && hit.Load() > 0 {
		for _, r := range runs {
			if name, _, ok := s.idx.File(sc.refs[r.pages[0]].File); ok {
				s.lru.touch(fileID{name: name})
			}
		}
	}
}

// openBatch opens the batch file id for the keys at positions group, and
// with Config.DirectIO a second descriptor for O_DIRECT reads. When the
// file cannot be read it settles the keys and returns -1.
func (s *Store) openBatch(id uint32, group []int32, sc *scratch) (int, directFile) {
	none := directFile{fd: -1}
	name, _, known := s.idx.File(id)
	if !known {
		s.setState(group, sc, stGone)
		return -1, none
	}
	fd, err := s.sys.Openat(s.v1fd(), name, openFlags, 0)
	switch {
	case err == unix.ENOENT:
		// Gone (another process's Clear or eviction): forget it, and look
		// again after a refresh.
		s.forgetBatch(name)
		s.setState(group, sc, stGone)
		return -1, none
	case err == unix.ELOOP || err == unix.ENXIO || err == unix.EISDIR:
		s.notRegular(name, group, sc)
		return -1, none
	case err != nil:
		s.failGroup(group, sc, fmt.Errorf("hicachefile: open %s: %w", name, err))
		return -1, none
	}
	if !s.cfg.DirectIO {
		return fd, none
	}
	// The direct descriptor must be the file the buffered one opened.
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = s.sys.Close(fd)
		s.notRegular(name, group, sc)
		return -1, none
	}
	return fd, s.openDirect(name, &st)
}

// notRegular settles the keys of a batch file name that a FIFO, socket,
// device, directory or symlink has taken: misses, counted in
// Stats.SpecialFiles, and the name is known as holding no page.
func (s *Store) notRegular(name string, group []int32, sc *scratch) {
	s.stats.specialFiles.Add(1)
	s.forgetBatch(name)
	s.idx.Add(name, index.Meta{}, nil, nil)
	s.setState(group, sc, stDone)
}

// failGroup settles the keys of a batch file that could not be read: a
// file whose index ends early is corrupt and its copies are dropped; a
// read a special file refuses (ESPIPE, EISDIR) is a miss counted in
// Stats.SpecialFiles; anything else is an I/O error.
func (s *Store) failGroup(group []int32, sc *scratch, err error) {
	switch {
	case errors.Is(err, unix.ESPIPE) || errors.Is(err, unix.EISDIR):
		if name, _, ok := s.idx.File(sc.refs[group[0]].File); ok {
			s.notRegular(name, group, sc)
			return
		}
	case errors.Is(err, io.ErrUnexpectedEOF):
		for _, i := range group {
			s.stats.corrupt.Add(1)
			s.idx.Drop(sc.hashes[i], sc.refs[i])
		}
		s.setState(group, sc, stBadCopy)
		return
	default:
		s.stats.errors.Add(int64(len(group)))
	}
	s.setState(group, sc, stDone)
}

// setState sets the state of the keys at positions group.
func (s *Store) setState(group []int32, sc *scratch, st uint8) {
	for _, i := range group {
		sc.state[i] = st
	}
}

// readRun reads one run of adjacent pages, verifies each, and settles its
// keys. A run that fails is read again page by page, so that only the
// pages that cannot be read fail.
func (s *Store) readRun(pi *poolInfo, keys []string, bufs [][]byte, sc *scratch, r readRun, w *window, ok []bool, hit *atomic.Int64) {
	page := func(j int) [][]byte { i := int(r.pages[j]); return bufs[i*pi.bpp : (i+1)*pi.bpp] }
	var direct int64 // bytes read direct, counted once the piece is kept
	read := func(b [][]byte, off int64) error { return s.sys.preadv(r.fd, b, off) }
	off := sc.offs[r.pages[0]]
	if r.direct.fits(len(r.pages), page, off) {
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
	var small [64]uint32
	var got []uint32
	if len(r.pages) > len(small) {
		got = make([]uint32, len(r.pages))
	} else {
		got = small[:len(r.pages)]
	}
	err := checksummed(len(r.pages), page, got, off, false, w, read)
	if err != nil && len(r.pages) > 1 {
		// Find out page by page which of the run can be read.
		direct = 0
		for j, i := range r.pages {
			err := checksummed(1, func(int) [][]byte { return page(j) }, got[j:j+1], sc.offs[i], false, w, read)
			s.finishPage(pi, keys, sc, i, got[j], err, ok, hit)
		}
		s.stats.directBytes.Add(direct)
		return
	}
	s.stats.directBytes.Add(direct)
	for j, i := range r.pages {
		s.finishPage(pi, keys, sc, i, got[j], err, ok, hit)
	}
}

// finishPage settles the key at position i, whose page was read with the
// outcome readErr and CRC32C crc: good, or counted and its copy dropped if
// the page is bad or gone.
func (s *Store) finishPage(pi *poolInfo, keys []string, sc *scratch, i int32, crc uint32, readErr error, ok []bool, hit *atomic.Int64) {
	switch {
	case readErr == nil && crc == sc.crcs[i]:
		ok[i] = true
		sc.state[i] = stDone
		hit.Add(1)
		return
	case readErr == nil || errors.Is(readErr, io.ErrUnexpectedEOF):
		// A CRC mismatch, or a page past the end of a truncated file.
		s.stats.corrupt.Add(1)
		sc.state[i] = stBadCopy
	default:
		s.stats.errors.Add(1)
		sc.state[i] = stDone
		return
	}
	s.idx.Drop(sc.hashes[i], sc.refs[i])
}

// sortByRef sorts key positions by their copy's file, then entry offset.
// Keys of one batch usually arrive in that order, which it checks first.
func sortByRef(pos []int32, refs []index.Ref) {
	less := func(a, b int32) bool {
		ra, rb := refs[a], refs[b]
		return ra.File < rb.File || ra.File == rb.File && ra.Ent < rb.Ent
	}
	insertionSort(pos, less)
}

// sortByOff sorts key positions by their page offset.
func sortByOff(pos []int32, offs []int64) {
	insertionSort(pos, func(a, b int32) bool { return offs[a] < offs[b] })
}

// insertionSort sorts pos by less: linear when pos is sorted already or
// nearly, as the keys of one batch are; otherwise a heap sort.
func insertionSort(pos []int32, less func(a, b int32) bool) {
	sorted := true
	for k := 1; k < len(pos); k++ {
		if less(pos[k], pos[k-1]) {
			sorted = false
			break
		}
	}
	if sorted {
		return
	}
	heapSort(pos, less)
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
