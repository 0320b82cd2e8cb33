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
