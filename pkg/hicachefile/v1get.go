package hicachefile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

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
// false. The call holds at most maxOpenFiles batch files open at once; if
// it still runs out of descriptors (EMFILE, ENFILE) after waiting for some
// to be closed, it returns that error with the entries read so far.
//
// For the pages it finds, it makes per batch file an open (by path, so
// that reads follow the path Dir: see the package documentation), one preadv per
// run of adjacent pages (per 1024 buffers or MiB), and a close; the keys'
// entries in the file's own index, up to the file's end, come in the last
// preadv when the pages read end where the index begins (a batch read as
// it was written), else with one pread more. It makes no fstat: the entries
// are read up to the size the index recorded plus one byte, and a
// transfer short by exactly that byte shows the file is the size indexed
// (readProbe). Only a file whose read fails or finds it larger is fstat'ed,
// to classify it as a special file, another file or a truncated one
// (settleProbed); with Config.DirectIO every file is fstat'ed before it is
// read. It makes no system call per key, and no other when every key is
// found.
//
// Keys read back as a batch was written, its pages in order, are not
// looked up one by one: when the call's first and last keys lie n-1 pages
// apart in one batch file, the keys between are taken to fill the pages
// between (predictRun), and each is checked against the file's own index
// like any copy; a guess that proves wrong costs its key a lookup round.
func (s *Store) BatchGetV1(keys []string, hostIndices []int64) ([]bool, error) {
	ok := make([]bool, len(keys))
	sc := getScratch(len(keys))
	defer putScratch(sc)
	pi, bufs, err := s.v1Begin(keys, hostIndices, sc)
	if err != nil {
		return ok, err
	}
	defer s.v1End(pi)
	// Every key is checked before any read: an invalid one is a miss
	// (stInvalid), never looked up, guessed or read.
	invalid, err := sc.distinct(s, keys, hostIndices, pi)
	if err != nil {
		return ok, err
	}
	s.stats.gets.Add(int64(len(keys)))
	refreshed, hashed := false, false
	hits := 0 // keys served from batch files
	for round := range maxCopies {
		sc.predicted = round == 0 && !invalid && s.predictRun(keys, sc, pi)
		if !sc.predicted {
			// The digests are taken only now: a call whose guess held
			// needs none but the two predictRun takes, as no copy it
			// read is dropped (a guessed copy that fails is looked up).
			if !hashed {
				sc.hash(s.idx, keys)
				hashed = true
			}
			s.idx.Lookup(sc.hashes, pi.fp, sc.refs, nil)
		}
		// The keys to read, noting whether they come in file and page
		// order already, as a batch's keys do.
		read := sc.order[:0]
		missing, sorted := false, true
		var prev index.Ref
		if sc.predicted {
			// Every key guessed, in file and page order: all to read.
			read = read[:len(keys)]
			for i := range read {
				read[i], sc.state[i] = int32(i), stRead
			}
		} else {
			for i := range keys {
				switch r := sc.refs[i]; {
				case sc.state[i] == stDone || sc.state[i] == stInvalid:
				case r.File == 0:
					sc.state[i], missing = stNone, true
				default:
					sc.state[i] = stRead
					read = append(read, int32(i))
					sorted = sorted && (r.File > prev.File || r.File == prev.File && r.Page >= prev.Page)
					prev = r
				}
			}
		}
		retry, again := false, false
		if len(read) > 0 {
			if !sorted {
				sortByRef(read, sc.refs)
			}
			n, err := s.readFiles(pi, keys, bufs, sc, read, ok)
			hits += n
			if err != nil {
				s.countGets(pi, ok)
				return ok, err
			}
			for k := 0; n < len(read) && k < len(read); k++ {
				switch sc.state[read[k]] {
				case stBadCopy, stGone:
					retry = true
				case stAgain:
					again = true
				case stMismatch:
					missing = true // a loadable copy may have arrived
				}
			}
		}
		if missing && !refreshed || retry {
			s.refresh(true)
			refreshed = true
			continue
		}
		if again {
			continue // the keys guessed wrong, looked up
		}
		break
	}
	if hits == len(keys) {
		// Every key served: no old-format file to read, no mismatch to
		// count.
		s.stats.hits.Add(int64(hits))
		s.stats.getBytes.Add(int64(hits) * pi.pageLen)
		return ok, nil
	}
	for i, k := range keys {
		switch sc.state[i] {
		case stNone:
			// The old-format file of a key with '_' may be another
			// store's: "k_x" of model "m" is "k" of model "x_m". A miss.
			if !strings.Contains(k, "_") {
				var err error
				if ok[i], err = s.readOldV1(pi, k, hostIndices[i*pi.ps:(i+1)*pi.ps]); err != nil {
					s.countGets(pi, ok)
					return ok, err
				}
			}
		case stMismatch:
			s.stats.mismatch.Add(1)
		}
	}
	if refreshed && slices.Contains(ok, false) {
		// A miss may be a page whose file the index could not load for
		// want of descriptors: never a silent miss.
		s.scan.mu.Lock()
		err := s.scan.fdErr
		s.scan.mu.Unlock()
		if err != nil {
			s.countGets(pi, ok)
			return ok, fmt.Errorf("hicachefile: load batch file index: %w", err)
		}
	}
	s.countGets(pi, ok)
	return ok, nil
}

// predictRun sets the copies of a call's keys (sc.refs) when they look like
// one batch file's pages in order, as a batch is read back, and reports
// whether it did. It looks up the first and the last key only: when both
// are in one file this pool can load, the last n-1 pages after the first,
// and its entry just where the entries of the keys between would end it,
// each key between is taken to be at the next page, its entry right after
// the previous key's, without a lookup. Each page read is still checked
// against its file's own index, key in full, offset and CRC32C, like any
// other: a wrong guess (stAgain) costs its key a lookup round more, and no
// page is served that a lookup would not have found good. In a large index
// a lookup is a cache miss per key; a batch read as written makes two.
func (s *Store) predictRun(keys []string, sc *scratch, pi *poolInfo) bool {
	n := len(keys)
	if n < minPredict {
		return false
	}
	ends := [2]index.Ref{}
	hashes := [2]uint64{s.idx.Hash(keys[0]), s.idx.Hash(keys[n-1])}
	s.idx.Lookup(hashes[:], pi.fp, ends[:], nil)
	first, last := ends[0], ends[1]
	if first.File == 0 || last.File != first.File || int64(last.Page)-int64(first.Page) != int64(n-1) {
		return false
	}
	if _, meta, ok := s.idx.FileOf(first); !ok || meta.FP != pi.fp || meta.PageLen != pi.pageLen {
		return false
	}
	ent := int64(first.Ent)
	for i := range n - 1 {
		sc.refs[i] = index.Ref{File: first.File, Ent: uint32(ent), Page: first.Page + uint32(i), Gen: first.Gen}
		ent += entryFixed + int64(len(keys[i]))
	}
	if ent != int64(last.Ent) {
		return false // entries laid out otherwise than a batch's: look every key up
	}
	sc.refs[n-1] = last
	return true
}

// minPredict is the number of keys from which predictRun guesses: below
// it, a lookup of every key costs about what the guess saves.
const minPredict = 4

// countGets counts the hits and misses of a V1 read.
func (s *Store) countGets(pi *poolInfo, ok []bool) {
	hits := int64(0)
	for _, b := range ok {
		if b {
			hits++
		}
	}
	s.stats.hits.Add(hits)
	s.stats.getBytes.Add(hits * pi.pageLen)
	s.stats.misses.Add(int64(len(ok)) - hits)
}

// maxCopies bounds how many rounds of lookups a BatchGetV1 call makes: one
// more for each copy of a key that proves bad, and one for guesses
// (predictRun) that prove wrong.
const maxCopies = 5

// distinct sets each key's state to stNone, or stInvalid for a key s
// refuses (checkKey), and reports whether there was such a key. It checks,
// in the same pass, that no two keys of a V1 read share a destination page,
// with a bitmap of the pool's pages. The keys' digests (sc.hashes) are left
// for BatchGetV1 to take when it looks them up.
func (sc *scratch) distinct(s *Store, keys []string, hostIndices []int64, pi *poolInfo) (invalid bool, err error) {
	words := (pi.pages + 63) / 64
	shift := -1 // page = slot >> shift when the page size is a power of two
	if pi.ps&(pi.ps-1) == 0 {
		shift = bits.TrailingZeros(uint(pi.ps))
	}
	pageOf := func(slot int64) int64 {
		if shift >= 0 {
			return slot >> shift
		}
		return slot / int64(pi.ps)
	}
	if cap(sc.slots) < words {
		sc.slots = make([]uint64, words)
	}
	bm := sc.slots[:words]
	state := sc.state[:len(keys)]
	i := 0
	for ; i < len(keys); i++ {
		state[i] = stNone
		if !s.validKey(keys[i]) {
			state[i], invalid = stInvalid, true
		}
		pg := pageOf(hostIndices[i*pi.ps])
		if bm[pg/64]&(1<<(pg%64)) != 0 {
			err = fmt.Errorf("%w: slot %d is the destination of two keys", ErrLength, hostIndices[i*pi.ps])
			break
		}
		bm[pg/64] |= 1 << (pg % 64)
	}
	// Clear the bitmap for the next call: whole when it is small beside
	// the keys, else bit by bit.
	if words <= 4*i+64 {
		clear(bm)
		return invalid, err
	}
	for j := range i {
		pg := pageOf(hostIndices[j*pi.ps])
		bm[pg/64] = 0
	}
	return invalid, err
}

// readOldV1 reads key's old-format file zero-copy into the page at indices,
// in flat-page order, and counts the outcome. Only running out of
// descriptors is an error.
func (s *Store) readOldV1(pi *poolInfo, key string, indices []int64) (bool, error) {
	flat, err := pi.pool.FlatPageBuffers(indices)
	if err == nil {
		err = s.readOld(key, flat, pi.pageLen)
	}
	s.classify(err)
	if isFDLimit(err) {
		return false, err
	}
	return err == nil, nil
}

// maxOpenFiles bounds the batch files one call holds open at once (two
// descriptors each with DirectIO), whatever its size.
const maxOpenFiles = 16

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

// fileRead is what readFiles keeps about one batch file while it reads it.
type fileRead struct {
	group []int32 // the positions of its keys
	ents  []byte  // its index entries, from index offset base, to the file's end
	base  int64
	err   error      // the read of the entries failed
	meta  index.Meta // what the index holds about the file
	name  string
	fd    int
	// probe is set when no fstat checked the file before it was read
	// (see readProbe): a failure is then classified by an fstat after.
	probe bool
}

// readFiles reads the pages of the keys at positions read (state stRead,
// with refs set, sorted by file then page) into their pool buffers and
// verifies them. Per
// batch file it opens the file, reads each run of adjacent pages with one
// preadv per window, checksumming each window while it is in cache, and
// reads back the keys' entries from the file's own index: in the same
// preadv as the last run when that run ends where the index begins (a batch
// read whole, as it was written), else with a pread of their own. Each key
// is then checked against its entry (the full key, the page's offset and
// length) and its page against the entry's CRC32C. Large reads are spread
// over the IO workers. It leaves each key stDone (ok set when good),
// stBadCopy, stGone or stMismatch, and returns how many it found good.
func (s *Store) readFiles(pi *poolInfo, keys []string, bufs [][]byte, sc *scratch, read []int32, ok []bool) (int, error) {
	hits := 0
	for len(read) > 0 {
		n, h, err := s.readSome(pi, keys, bufs, sc, read, ok)
		hits += h
		if err != nil {
			return hits, err
		}
		read = read[n:]
	}
	return hits, nil
}

// readSome is readFiles for the keys of the first maxOpenFiles files of
// read, and returns how many keys of read it took and how many of them it
// found good. It fails only when out of descriptors.
func (s *Store) readSome(pi *poolInfo, keys []string, bufs [][]byte, sc *scratch, read []int32, ok []bool) (taken, hits int, err error) {
	runs, files := sc.runs[:0], sc.files[:0]
	var fds [8]int
	open := fds[:0]
	defer func() {
		for _, fd := range open {
			_ = s.sys.Close(fd)
		}
	}()
	// The entries of every file go into one buffer, reused from call to
	// call.
	ebuf := sc.ibuf[:0]
	total := 0
	for nf := 0; taken < len(read) && nf < maxOpenFiles; nf++ {
		// One pass over the next file's keys: where they end, where
		// their entries start, and the runs of adjacent pages, each
		// noting whether its keys' positions are consecutive too. The
		// runs get the file's descriptor once open.
		rest := read[taken:]
		id, gen := sc.refs[rest[0]].File, sc.refs[rest[0]].Gen
		f, r0 := len(files), len(runs)
		lo := int64(math.MaxInt64)
		first, consec := 0, true
		prev := sc.refs[rest[0]]
		k := 0
		if sc.predicted {
			// Guessed (predictRun): every key of the call, at the
			// file's pages in order, its entries in order too. One run.
			k, lo = len(rest), int64(prev.Ent)
		}
		for ; k < len(rest); k++ {
			i := rest[k]
			ref := sc.refs[i]
			if ref.File != id || ref.Gen != gen {
				break
			}
			lo = min(lo, int64(ref.Ent))
			if k > 0 {
				if int64(ref.Page) != int64(prev.Page)+1 {
					runs = append(runs, readRun{file: f, pages: rest[first:k], consecutive: consec})
					first, consec = k, true
				} else if i != rest[k-1]+1 {
					consec = false
				}
			}
			prev = ref
		}
		group := rest[:k]
		runs = append(runs, readRun{file: f, pages: group[first:], consecutive: consec})
		taken += k
		fd, name, meta, size, direct, err := s.openBatch(sc.refs[rest[0]], group, pi, sc)
		if err != nil || fd < 0 {
			clear(runs[r0:])
			runs = runs[:r0]
			if err != nil {
				return taken, 0, err
			}
			continue
		}
		open = append(open, fd)
		if direct.fd >= 0 {
			open = append(open, direct.fd)
		}
		// The entries are read up to the end of the file, so that the
		// trailer's checksum comes too: verifyFile checks it against the
		// one the index recorded, and a file another store renamed in
		// place of this one is not taken for it. Without an fstat
		// (size < 0) the end is the one indexed, and the read probes one
		// byte past it (readProbe).
		probe := size < 0
		if probe {
			size = meta.Size
		}
		// Where the keys' entries end: checked against the file's size
		// when an fstat gave it; a size from the index holds them (it was
		// checked when the index was loaded).
		entHi := int64(0)
		if !probe {
			entHi = entriesEnd(keys, sc, group)
		}
		grown := meta.Size > 0 && size > meta.Size
		end := size - meta.IndexOff
		if end < entHi || end < 4 || grown {
			// Shorter than its own index says: truncated, or not the file
			// indexed. Longer than the file indexed: another file copied or
			// renamed in its place, which is not read, however large.
			c := &s.stats.corrupt
			if grown {
				c = &s.stats.mismatch
				if !sc.predicted {
					s.reloadBatch(name) // another file now: read its index
				}
			}
			s.dropGroup(group, sc, c)
			clear(runs[r0:])
			runs = runs[:r0]
			continue
		}
		hi := end
		if lo < 0 || lo > hi {
			// Entries the file cannot hold: the copies were found in
			// another file than the one this id names now. Not corrupt:
			// looked up again after a refresh.
			s.setState(group, sc, stGone)
			clear(runs[r0:])
			runs = runs[:r0]
			continue
		}
		for j := r0; j < len(runs); j++ {
			runs[j].fd, runs[j].direct, runs[j].probe = fd, direct, probe
			total += len(runs[j].pages)
		}
		files = append(files, fileRead{group: group, meta: meta, name: name, fd: fd, probe: probe})
		// When the last run ends where the index begins, its entries come
		// in the same preadv, from the index's start (a batch read whole,
		// as it was written); else they take a pread of their own.
		last := &runs[len(runs)-1]
		runBytes := int64(len(last.pages)) * pi.pageLen
		combined := direct.fd < 0 && (int64(sc.refs[last.pages[len(last.pages)-1]].Page)+1)*pi.pageLen == meta.IndexOff &&
			lo <= max(loadTail, runBytes)
		if combined {
			lo = 0
		}
		extra := 0 // the probe byte
		if probe {
			extra = 1
		}
		if cap(ebuf)-len(ebuf) < int(hi-lo)+extra {
			// A new buffer: the entries already read stay where they are.
			// Room for every entry still to read, at least.
			need := int(hi-lo) + extra
			for _, i := range read[taken-len(group):] {
				need += entryFixed + len(keys[i]) + 1
			}
			ebuf = make([]byte, 0, need)
		}
		start := len(ebuf)
		ebuf = ebuf[:start+int(hi-lo)+extra]
		tail := ebuf[start:]
		files[f].ents, files[f].base = tail[:hi-lo], lo
		switch {
		case combined:
			last.tail = tail
		case probe:
			files[f].err = readProbe(s.sys.Preadv, fd, [][]byte{tail}, meta.IndexOff+lo)
		default:
			files[f].err = s.sys.preadv(fd, [][]byte{tail}, meta.IndexOff+lo)
		}
	}
	sc.runs, sc.files, sc.ibuf = runs, files, ebuf
	if total == 0 {
		return taken, 0, nil
	}
	if s.workers <= 1 || int64(total)*pi.pageLen < 2*minPieceBytes {
		w := window{iov: sc.iov, owner: sc.owner}
		for _, r := range runs {
			if err := s.readRun(pi, bufs, sc, r, &w); err != nil && files[r.file].err == nil {
				files[r.file].err = err
			}
		}
		sc.iov, sc.owner = w.iov, w.owner
	} else {
		// Cut runs into pieces of about an even share of the bytes, so that
		// every worker has work, but keep small reads whole. The tail goes
		// with the last piece.
		per := piecePages(s.workers, total, pi.pageLen)
		var pieces []readRun
		for _, r := range runs {
			for lo := 0; lo < len(r.pages); lo += per {
				p := r
				p.pages = r.pages[lo:min(len(r.pages), lo+per)]
				if lo+per < len(r.pages) {
					p.tail = nil
				}
				pieces = append(pieces, p)
			}
		}
		errs := make([]error, len(pieces))
		parallel(s.workers, len(pieces), func(p int) {
			errs[p] = s.readRun(pi, bufs, sc, pieces[p], &window{serial: true})
		})
		for p, err := range errs {
			if f := pieces[p].file; err != nil && files[f].err == nil {
				files[f].err = err
			}
		}
	}
	for f := range files {
		hits += s.verifyFile(pi, keys, sc, &files[f], ok)
	}
	if s.lru.on && hits > 0 {
		for _, f := range files {
			if name, _, ok := s.idx.FileOf(sc.refs[f.group[0]]); ok {
				s.lru.touch(fileID{name: name})
			}
		}
	}
	return taken, hits, nil
}

// openBatch opens the batch file id for the keys at positions group, unless
// another pool or store wrote it (it then leaves them stMismatch), and
// with Config.DirectIO a second descriptor for O_DIRECT reads, and returns
// its name and the metadata the index holds for it. It makes no fstat
// when the index knows the file's size and DirectIO is off: the file is
// then read as a regular file of that size (readProbe), and checked with
// an fstat only if that read fails (settleProbed). Otherwise it fstats the
// file, which must be a regular file, before any read, and returns its
// size; size is -1 when it did not fstat. When the file cannot be read it
// settles the keys and returns -1; out of descriptors, it returns the
// error.
func (s *Store) openBatch(ref index.Ref, group []int32, pi *poolInfo, sc *scratch) (fd int, name string, meta index.Meta, size int64, direct directFile, err error) {
	direct = directFile{fd: -1}
	name, meta, known := s.idx.FileOf(ref)
	switch {
	case !known:
		s.setState(group, sc, stGone)
		return -1, "", meta, 0, direct, nil
	case meta.FP != pi.fp || meta.PageLen != pi.pageLen:
		// Only copies another pool or store wrote: not read.
		if !sc.guessed(group) {
			s.setState(group, sc, stMismatch)
		}
		return -1, "", meta, 0, direct, nil
	}
	// By path, not relative to the V1 directory's descriptor: a read
	// follows the path Dir as writes do, so that a Dir moved away, removed
	// or swapped (a symlink retargeted) fails the open, which sends the
	// call to refresh and checkDir, instead of serving the directory the
	// store holds open. The walk of the path costs no system call more.
	path := sc.v1Path(s.v1Dir, name)
	fd, err = s.openWait(unix.AT_FDCWD, path)
	switch {
	case isFDLimit(err):
		s.stats.errors.Add(1)
		return -1, "", meta, 0, direct, err
	case err == unix.ENOENT:
		// Gone (another process's Clear or eviction): forget it, and look
		// again after a refresh.
		s.forgetBatch(name)
		s.setState(group, sc, stGone)
		s.dirCheck.Store(true)
		return -1, "", meta, 0, direct, nil
	case err == unix.ELOOP || err == unix.ENXIO || err == unix.EISDIR:
		s.notRegular(name, group, sc)
		return -1, "", meta, 0, direct, nil
	case err != nil:
		s.failGroup(group, sc, fmt.Errorf("hicachefile: open %s: %w", name, err))
		return -1, "", meta, 0, direct, nil
	}
	if meta.Size > 0 && !s.cfg.DirectIO {
		return fd, name, meta, -1, direct, nil
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		_ = s.sys.Close(fd)
		s.notRegular(name, group, sc)
		return -1, "", meta, 0, direct, nil
	}
	// The direct descriptor must be the file the buffered one opened.
	return fd, name, meta, st.Size, s.openDirect(path, &st), nil
}

// errGrown says that a batch file read without an fstat holds more bytes
// than the index recorded: it is not the file indexed.
var errGrown = errors.New("hicachefile: batch file larger than indexed")

// readProbe is vectored for a read of a batch file whose size is taken
// from the index, not from an fstat: the last byte of bufs lies one past
// the file's indexed end, a probe. The read succeeds when the file ends
// right before the probe, which a regular file shows by a transfer that
// stops short of it (or, past a split at the iovec limit, by a transfer
// of zero bytes), so that a file of the indexed size costs no system call
// more than a read of its bytes. It returns errGrown when the probe byte
// was read too: the file is longer than the one indexed. A file that ends
// earlier fails as vectored does, with io.ErrUnexpectedEOF.
func readProbe(op func(int, [][]byte, int64) (int, error), fd int, bufs [][]byte, off int64) error {
	cloned := false
	for {
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		if len(bufs) == 0 {
			return errGrown
		}
		whole := len(bufs) <= maxIovecs // this call asks for every byte left, the probe with them
		n, err := op(fd, bufs[:min(len(bufs), maxIovecs)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		probeLeft := len(bufs) == 1 && len(bufs[0]) == 1
		if n == 0 {
			if probeLeft {
				return nil
			}
			return io.ErrUnexpectedEOF
		}
		off += int64(n)
		for len(bufs) > 0 && n >= len(bufs[0]) {
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		if whole && len(bufs) == 1 && len(bufs[0])-n == 1 {
			return nil // short by the probe byte alone: the file ends where indexed
		}
		if n > 0 {
			if !cloned {
				bufs, cloned = slices.Clone(bufs), true
			}
			bufs[0] = bufs[0][n:]
		}
	}
}

// settleProbed settles the keys of a batch file read without an fstat
// (readProbe) whose read failed: an fstat now tells what one before the
// read would have, and the keys still unsettled are settled as they then
// were. A file that is not regular (a FIFO's ESPIPE, a directory's EISDIR,
// a device) is a miss counted in Stats.SpecialFiles. A file larger than
// indexed is another file put in its place: a mismatch, its copies
// dropped. A file too short to hold the keys' entries and a trailer is
// corrupt, its copies dropped. A file that holds the entries but ends
// before its indexed end has lost its trailer, whose checksum the read
// would not have matched: a mismatch, as for another file in its place.
// Any other failure settles them as failGroup does.
func (s *Store) settleProbed(keys []string, f *fileRead, sc *scratch) {
	var st unix.Stat_t
	if unix.Fstat(f.fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		s.notRegular(f.name, f.group, sc)
		return
	}
	end := st.Size - f.meta.IndexOff
	corrupt := end < entriesEnd(keys, sc, f.group) || end < 4
	switch {
	case st.Size > f.meta.Size, !corrupt && st.Size < f.meta.Size, errors.Is(f.err, errGrown):
		s.dropGroup(f.group, sc, &s.stats.mismatch)
		if !sc.predicted {
			s.reloadBatch(f.name) // another file now: read its index
		}
	case corrupt:
		s.dropGroup(f.group, sc, &s.stats.corrupt)
	default:
		s.failGroup(f.group, sc, f.err)
	}
}

// entriesEnd returns where the index entries of the keys at positions
// group end, from the index's start.
func entriesEnd(keys []string, sc *scratch, group []int32) int64 {
	hi := int64(0)
	for _, i := range group {
		hi = max(hi, int64(sc.refs[i].Ent)+entryFixed+int64(len(keys[i])))
	}
	return hi
}

// dropGroup settles the keys at positions group whose read is still
// pending (stRead) as bad copies: each is counted in c, and its copy is
// dropped from the index.
func (s *Store) dropGroup(group []int32, sc *scratch, c *atomic.Int64) {
	if sc.guessed(group) {
		return
	}
	for _, i := range group {
		if sc.state[i] != stRead {
			continue
		}
		c.Add(1)
		s.idx.Drop(sc.hashes[i], sc.refs[i])
		sc.state[i] = stBadCopy
	}
}

// notRegular settles the keys of a batch file name that a FIFO, socket,
// device, directory or symlink has taken: misses, counted in
// Stats.SpecialFiles, and the name is known as holding no page.
func (s *Store) notRegular(name string, group []int32, sc *scratch) {
	s.stats.specialFiles.Add(1)
	s.forgetBatch(name)
	s.idx.Add(name, index.Meta{}, nil, nil)
	if !sc.guessed(group) {
		s.setState(group, sc, stDone)
	}
}

// failGroup settles the keys of a batch file that could not be read: a
// file whose index ends early is corrupt and its copies are dropped; a
// read a special file refuses (ESPIPE, EISDIR) is a miss counted in
// Stats.SpecialFiles; anything else is an I/O error.
func (s *Store) failGroup(group []int32, sc *scratch, err error) {
	switch {
	case errors.Is(err, unix.ESPIPE) || errors.Is(err, unix.EISDIR):
		if name, _, ok := s.idx.FileOf(sc.refs[group[0]]); ok {
			s.notRegular(name, group, sc)
			return
		}
	case sc.guessed(group):
		return
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

// guessed reports whether the copies of the keys at positions group were
// guessed (predictRun), not looked up, and if so leaves those still to
// settle (stRead) stAgain, for a lookup round to settle, uncounted: the
// index may not hold those copies at all.
func (sc *scratch) guessed(group []int32) bool {
	if !sc.predicted {
		return false
	}
	for _, i := range group {
		if sc.state[i] == stRead {
			sc.state[i] = stAgain
		}
	}
	return true
}

// setState sets the state of the keys at positions group.
func (s *Store) setState(group []int32, sc *scratch, st uint8) {
	for _, i := range group {
		sc.state[i] = st
	}
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
				s.idx.Drop(sc.hashes[i], sc.refs[i])
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
		pageCRCs(bufs[lo*bpp:hi*bpp], bpp, crcs[lo:hi])
		off += int64(hi-lo) * pageLen
	}
	return nil
}

// verifyFile checks each key read from the file f against its entry in
// the file's own index (the full key, the page's offset and length) and its
// page against the entry's CRC32C, and settles it: ok, or its copy dropped
// as bad. It returns how many keys it found good.
func (s *Store) verifyFile(pi *poolInfo, keys []string, sc *scratch, f *fileRead, ok []bool) int {
	if f.err != nil {
		if f.probe {
			s.settleProbed(keys, f, sc)
		} else {
			s.failGroup(f.group, sc, f.err)
		}
		return 0
	}
	hits := 0
	foreign := fileTag(f.ents) != f.meta.Tag
	// The scratch slices in locals: the loop's stores to state and ok
	// would otherwise make the compiler load each again per key.
	state, refs, crcs := sc.state, sc.refs, sc.crcs
	ents, base, pageLen := f.ents, f.base, pi.pageLen
	// A guessed read's entry offsets come from the call's key lengths.
	// The file's own entries are walked alongside, from the first key's
	// (looked up, so an entry start), each next one where the previous
	// one's length field ends it: a guessed key is compared only with an
	// entry that starts where the guess put it.
	walking, walk := sc.predicted && len(f.group) > 0, int64(-1)
	if walking {
		walk = int64(refs[f.group[0]].Ent) - base
	}
	for _, i := range f.group {
		ref, key := refs[i], keys[i]
		e := int64(ref.Ent) - base
		entryStart := true
		if walking {
			entryStart = walk >= 0 && e == walk
			walk = nextEntry(ents, walk)
		}
		if state[i] != stRead {
			continue // failed its read
		}
		// Each key's entry is decoded once: the full key, the page's
		// offset and length, then its CRC32C (only once the rest
		// matches: the entry's bounds are checked by then).
		matches := !foreign && entryStart && entryMatches(ents, e, key, int64(ref.Page)*pageLen, pageLen)
		if matches && entryCRC(ents, e, len(key)) == crcs[i] {
			ok[i], state[i] = true, stDone
			hits++
			continue
		}
		switch {
		case sc.predicted:
			// A guess (predictRun) that failed: whether the index holds
			// this copy at all, a lookup round tells, and settles it.
			state[i] = stAgain
			continue
		case foreign:
			// Another file under this file's name (another model's or
			// rank's, renamed in place, or another batch written over
			// it): not the copy indexed. Its own index is read again.
			s.stats.mismatch.Add(1)
		case !matches:
			// Another key with the same digest, or a file rewritten in
			// place: this copy is not the key's.
		default:
			s.stats.corrupt.Add(1)
		}
		state[i] = stBadCopy
		s.idx.Drop(sc.hashes[i], ref)
	}
	if foreign && !sc.predicted {
		s.reloadBatch(f.name)
	}
	return hits
}

// entryMatches reports whether the index entry at e in ents is key's, for
// a page at off of length bytes: the full key, the offset and the length.
// Its bounds are checked; verifyFile compares it with the key asked for,
// which checkKey passed.
func entryMatches(ents []byte, e int64, key string, off, length int64) bool {
	n := int64(len(key))
	if e < 0 || e+entryFixed+n > int64(len(ents)) {
		return false
	}
	b := ents[e : e+entryFixed+n]
	rest := b[2+n:]
	return int64(binary.LittleEndian.Uint16(b)) == n && sameKey(b[2:2+n], key) &&
		int64(binary.LittleEndian.Uint64(rest)) == off && int64(binary.LittleEndian.Uint64(rest[8:])) == length
}

// nextEntry returns the offset in ents of the entry after the one at e,
// by e's own length field, or -1 when e's entry does not lie within ents.
func nextEntry(ents []byte, e int64) int64 {
	if e < 0 || e+entryFixed > int64(len(ents)) {
		return -1
	}
	next := e + entryFixed + int64(binary.LittleEndian.Uint16(ents[e:]))
	if next > int64(len(ents)) {
		return -1
	}
	return next
}

// entryCRC returns the CRC32C of the entry at e in ents, of a key of
// keyLen bytes, that entryMatches accepted.
func entryCRC(ents []byte, e int64, keyLen int) uint32 {
	return binary.LittleEndian.Uint32(ents[e+2+int64(keyLen)+16:])
}

// sameKey reports whether b holds key. SGLang's keys, sha256 hex digests,
// are 64 bytes: those are compared as eight words, with no call.
func sameKey(b []byte, key string) bool {
	if len(b) != 64 || len(key) != 64 {
		return string(b) == key
	}
	k := unsafe.Slice(unsafe.StringData(key), 64)
	b = b[:64:64]
	le := binary.LittleEndian
	x := (le.Uint64(b) ^ le.Uint64(k)) | (le.Uint64(b[8:]) ^ le.Uint64(k[8:])) |
		(le.Uint64(b[16:]) ^ le.Uint64(k[16:])) | (le.Uint64(b[24:]) ^ le.Uint64(k[24:])) |
		(le.Uint64(b[32:]) ^ le.Uint64(k[32:])) | (le.Uint64(b[40:]) ^ le.Uint64(k[40:])) |
		(le.Uint64(b[48:]) ^ le.Uint64(k[48:])) | (le.Uint64(b[56:]) ^ le.Uint64(k[56:]))
	return x == 0
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
