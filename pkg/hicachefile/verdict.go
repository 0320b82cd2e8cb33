//go:build linux

package hicachefile

import (
	"errors"
	"io"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/lru"
)

// A read settles each key with a verdict (scratch.state) and notes what it
// found of whole files (scratch.effects); nothing it does while it reads
// changes the index, the eviction order or the directory scan.
// applyVerdicts applies them all in one place once the files are read: a
// bad copy (stBadCopy) is dropped from the index, and each file effect is
// applied.

// fileEffect is what a read found of one batch file, to apply to the index.
type fileEffect struct {
	name string
	kind uint8
}

// The kinds of fileEffect.
const (
	effGone    uint8 = iota // the file is gone: forget it
	effSpecial              // another kind of file took its name: known as holding nothing
	effReload               // another file took its name: read its index again
)

// applyVerdicts applies the verdicts of the keys at positions read and
// the effects a read noted, and moves the files whose pages were served
// up the eviction order.
func (s *Store) applyVerdicts(sc *scratch, read []int32, files []fileRead, hits int) {
	if hits < len(read) { // a key served is no bad copy
		for _, i := range read {
			if sc.state[i] == stBadCopy {
				s.idx.Drop(sc.hashes[i], sc.refs[i])
			}
		}
	}
	for _, e := range sc.effects {
		switch e.kind {
		case effGone:
			s.forgetBatch(e.name)
		case effSpecial:
			s.forgetBatch(e.name)
			s.idx.Add(e.name, index.Meta{}, nil, nil)
		case effReload:
			s.reloadBatch(e.name)
		}
	}
	clear(sc.effects)
	sc.effects = sc.effects[:0]
	if s.lru.On() && hits > 0 {
		for _, f := range files {
			if name, _, ok := s.idx.FileOf(sc.refs[f.group[0]]); ok {
				s.lru.Touch(lru.ID{Name: name})
			}
		}
	}
}

// note records a file effect for applyVerdicts.
func (sc *scratch) note(name string, kind uint8) {
	sc.effects = append(sc.effects, fileEffect{name: name, kind: kind})
}

// dropGroup settles the keys at positions group whose read is still
// pending (stRead) as bad copies, each counted in c.
func (s *Store) dropGroup(group []int32, sc *scratch, c *atomic.Int64) {
	if sc.guessed(group) {
		return
	}
	for _, i := range group {
		if sc.state[i] != stRead {
			continue
		}
		c.Add(1)
		sc.state[i] = stBadCopy
	}
}

// notRegular settles the keys of a batch file name that a FIFO, socket,
// device, directory or symlink has taken: misses, counted in
// Stats.SpecialFiles, and the name is to be known as holding no page.
func (s *Store) notRegular(name string, group []int32, sc *scratch) {
	s.stats.specialFiles.Add(1)
	sc.note(name, effSpecial)
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
		s.stats.corrupt.Add(int64(len(group)))
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
	foreign := batchfile.Tag(f.ents) != f.meta.Tag
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
			walk = batchfile.NextEntry(ents, walk)
		}
		if state[i] != stRead {
			continue // failed its read
		}
		// Each key's entry is decoded once: the full key, the page's
		// offset and length, then its CRC32C (only once the rest
		// matches: the entry's bounds are checked by then).
		matches := !foreign && entryStart && batchfile.Match(ents, e, key, int64(ref.Page)*pageLen, pageLen)
		if matches && batchfile.EntryCRC(ents, e, len(key)) == crcs[i] {
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
	}
	if foreign && !sc.predicted {
		sc.note(f.name, effReload)
	}
	return hits
}
