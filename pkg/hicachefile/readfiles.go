//go:build linux

package hicachefile

import (
	"math"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

// maxOpenFiles bounds the batch files one call holds open at once (two
// descriptors each with DirectIO), whatever its size.
const maxOpenFiles = 16

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
// found good. It fails only when out of descriptors. It runs one way: plan
// each file's runs and open it (planFile, openBatch, checkSize), read every
// run (readRuns), settle each key (verifyFile), then apply the verdicts to
// the index in one place (applyVerdicts).
func (s *Store) readSome(pi *poolInfo, keys []string, bufs [][]byte, sc *scratch, read []int32, ok []bool) (taken, hits int, err error) {
	runs, files := sc.runs[:0], sc.files[:0]
	var fds [8]int
	open := fds[:0]
	defer func() {
		for _, fd := range open {
			_ = s.sys.Close(fd)
		}
		s.applyVerdicts(sc, read[:taken], files, hits)
	}()
	// The entries of every file go into one buffer, reused from call to
	// call.
	ebuf := sc.ibuf[:0]
	total := 0
	for nf := 0; taken < len(read) && nf < maxOpenFiles; nf++ {
		f, r0 := len(files), len(runs)
		var group []int32
		var lo int64
		group, runs, lo = sc.planFile(read[taken:], runs, f)
		taken += len(group)
		fd, name, meta, size, direct, err := s.openBatch(sc.refs[group[0]], group, pi, sc)
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
		// Without an fstat (size < 0) the file's size is the one indexed,
		// and the read of its entries probes one byte past it (readProbe).
		probe := size < 0
		if probe {
			size = meta.Size
		}
		hi := size - meta.IndexOff // the entries are read up to the file's end
		if !s.checkSize(keys, sc, group, name, meta, size, probe, lo) {
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
		var tail []byte
		ebuf, tail = growEntries(ebuf, int(hi-lo), probe, keys, read[taken-len(group):])
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
	s.readRuns(pi, bufs, sc, runs, files, total)
	for f := range files {
		hits += s.verifyFile(pi, keys, sc, &files[f], ok)
	}
	return taken, hits, nil
}

// planFile takes the keys at the start of rest whose copies lie in one
// file, the first key's, and returns them (group), runs with a readRun
// appended for each run of adjacent pages among them, noting whether its
// keys' positions are consecutive too (f is the file's index in
// scratch.files), and where their entries start in the file's index (lo).
// The runs get the file's descriptor once it is open.
func (sc *scratch) planFile(rest []int32, runs []readRun, f int) (group []int32, _ []readRun, lo int64) {
	id, gen := sc.refs[rest[0]].File, sc.refs[rest[0]].Gen
	lo = int64(math.MaxInt64)
	first, consec := 0, true
	prev := sc.refs[rest[0]]
	k := 0
	if sc.predicted {
		// Guessed (predictRun): every key of the call, at the file's
		// pages in order, its entries in order too. One run.
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
	group = rest[:k]
	return group, append(runs, readRun{file: f, pages: group[first:], consecutive: consec}), lo
}

// checkSize reports whether the batch file name, open for the keys at
// positions group, of size bytes (from an fstat, or from the index when
// probe), can hold their entries from lo, and settles them when it cannot.
// A file shorter than its own index says is truncated, or not the file
// indexed: corrupt. A file longer than the one indexed is another file
// copied or renamed in its place, which is not read, however large: a
// mismatch, and its own index is read again. Entries that start past the
// file's end were found in another file than the one the id names now: the
// keys are looked up again after a refresh, uncounted.
func (s *Store) checkSize(keys []string, sc *scratch, group []int32, name string, meta index.Meta, size int64, probe bool, lo int64) bool {
	// Where the keys' entries end: checked against the file's size when
	// an fstat gave it; a size from the index holds them (it was checked
	// when the index was loaded).
	entHi := int64(0)
	if !probe {
		entHi = entriesEnd(keys, sc, group)
	}
	grown := meta.Size > 0 && size > meta.Size
	end := size - meta.IndexOff
	switch {
	case grown:
		if !sc.predicted {
			sc.note(name, effReload)
		}
		s.dropGroup(group, sc, &s.stats.mismatch)
		return false
	case end < entHi || end < 4:
		s.dropGroup(group, sc, &s.stats.corrupt)
		return false
	case lo < 0 || lo > end:
		s.setState(group, sc, stGone)
		return false
	}
	return true
}

// growEntries returns ebuf grown by n bytes (and the probe byte, with
// probe), and those bytes: where a file's entries are read. A buffer too
// small is replaced by one with room for the entries of every key still to
// read (rest) as well; the entries already read stay where they are.
func growEntries(ebuf []byte, n int, probe bool, keys []string, rest []int32) (_, tail []byte) {
	if probe {
		n++
	}
	if cap(ebuf)-len(ebuf) < n {
		need := n
		for _, i := range rest {
			need += entryFixed + len(keys[i]) + 1
		}
		ebuf = make([]byte, 0, need)
	}
	start := len(ebuf)
	ebuf = ebuf[:start+n]
	return ebuf, ebuf[start:]
}

// readRuns reads every run of a round, and records each file's first
// failure in files: in this goroutine, or, for a read large enough to
// share, cut into pieces of about an even share of the bytes over the IO
// workers (small reads stay whole; a run's tail goes with its last piece).
func (s *Store) readRuns(pi *poolInfo, bufs [][]byte, sc *scratch, runs []readRun, files []fileRead, total int) {
	if s.workers <= 1 || int64(total)*pi.pageLen < 2*minPieceBytes {
		w := window{iov: sc.iov, owner: sc.owner}
		for _, r := range runs {
			if err := s.readRun(pi, bufs, sc, r, &w); err != nil && files[r.file].err == nil {
				files[r.file].err = err
			}
		}
		sc.iov, sc.owner = w.iov, w.owner
		return
	}
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
