//go:build linux

package hicachefile

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

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
// false. The call holds at most 16 batch files open at once; if it still
// runs out of descriptors (EMFILE, ENFILE) after waiting for some to be
// closed, it returns that error with the entries read so far.
//
// For the pages it finds, it makes per batch file an open (by path, so
// that reads follow the path Dir), one preadv per run of adjacent pages
// (per 1024 buffers or MiB), and a close; the keys' entries in the file's
// own index come in the last preadv when the pages read end where the
// index begins (a batch read as it was written), else with one pread more.
// It makes no fstat unless a read fails or finds the file larger than
// indexed (with Config.DirectIO, every file is fstat'ed before it is read),
// no system call per key, and no other when every key is found.
//
// Keys read back as a batch was written, its pages in order, are not
// looked up one by one: when the call's first and last keys lie n-1 pages
// apart in one batch file, the keys between are taken to fill the pages
// between, and each is checked against the file's own index like any copy;
// a guess that proves wrong costs its key a lookup round.
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
