//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/index"
)

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
		sc.note(name, effGone)
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
			sc.note(f.name, effReload) // another file now: read its index
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
