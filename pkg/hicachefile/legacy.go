//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
)

// Legacy names: those of the previous format, without the identity
// digest (docs/format.md says what becomes of them). v1S/ held the batch
// files of every identity of suffix S, so a store's Clear, eviction and
// byte count took its twins' files; New moves its own out of it, Clear
// removes its own from it, and a dead writer's temp file of those names
// goes as the store's own do.

// legacyVerdict is what a legacy batch file is to the store.
type legacyVerdict int

const (
	legacyOther legacyVerdict = iota // another identity's, or not readable now: left
	legacyOurs                       // the store's own identity's
	legacyBad                        // fails its checks: no store serves it
)

// judgeLegacy reads the trailer and identity of the legacy batch file name
// in dirfd (at path dir).
func (s *Store) judgeLegacy(dirfd int, dir, name string) legacyVerdict {
	fd, st, err := s.openRegular(dirfd, dir, name)
	switch {
	case errors.Is(err, errNotRegular):
		return legacyBad
	case err != nil:
		return legacyOther
	}
	defer s.sys.Close(fd)
	if st.Size < trailerSize {
		return legacyBad
	}
	tb := make([]byte, trailerSize)
	if s.sys.preadv(fd, [][]byte{tb}, st.Size-trailerSize) != nil {
		return legacyOther
	}
	t, err := batchfile.ParseTrailer(tb, st.Size)
	if err != nil || t.IdentLen < identityFixed || t.IdentLen > identityFixed+math.MaxUint16 {
		return legacyBad
	}
	ib := make([]byte, t.IdentLen)
	if s.sys.preadv(fd, [][]byte{ib}, t.IndexOff+t.IndexLen) != nil {
		return legacyOther
	}
	switch key, err := s.identityKey(ib, t); {
	case err != nil:
		return legacyBad
	case key == s.identKey:
		return legacyOurs
	}
	return legacyOther
}

// openLegacyDir opens the legacy V1 directory of the store's suffix, or
// returns -1 when there is none.
func (s *Store) openLegacyDir() int {
	fd, err := unix.Openat(s.topfd(), s.legacyV1DirName(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// adoptLegacy moves the store's batch files out of the legacy V1
// directory into its own, and removes what no store can use there; New
// calls it before its first listing. Failures only leave files where they
// are.
func (s *Store) adoptLegacy() {
	lfd := s.openLegacyDir()
	if lfd < 0 {
		return
	}
	_ = s.sweepLegacy(lfd, false)
	_ = unix.Close(lfd)
	// Gone only once empty: another identity's files keep it.
	_ = s.sys.Unlinkat(s.topfd(), s.legacyV1DirName(), unix.AT_REMOVEDIR)
}

// clearLegacy removes the store's batch files, and those that fail their
// checks, from the legacy V1 directory: Clear's share of it.
func (s *Store) clearLegacy() error {
	lfd := s.openLegacyDir()
	if lfd < 0 {
		return nil
	}
	defer unix.Close(lfd)
	return s.sweepLegacy(lfd, true)
}

// sweepLegacy goes through the legacy V1 directory open at lfd: the
// store's batch files are removed (clear) or moved into its V1 directory,
// failing ones removed, and dead writers' temp files reclaimed.
func (s *Store) sweepLegacy(lfd int, clear bool) error {
	dir := filepath.Join(s.dir, s.legacyV1DirName())
	names, err := readDirNamesAt(lfd)
	if err != nil {
		return fmt.Errorf("hicachefile: list %s: %w", dir, err)
	}
	now := time.Now()
	var errs []error
	for _, n := range names {
		if s.isLegacyTmpName(n) {
			if removed, _ := s.reclaimOne(lfd, n, false, now); removed {
				s.stats.reclaimedTemps.Add(1)
			}
			continue
		}
		if !s.isBatchName(n) {
			continue
		}
		var err error
		switch v := s.judgeLegacy(lfd, dir, n); {
		case v == legacyBad, v == legacyOurs && clear:
			err = s.sys.Unlinkat(lfd, n, 0)
		case v == legacyOurs:
			err = s.sys.Renameat(lfd, n, s.v1fd(), s.batchName())
		}
		if err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("hicachefile: sweep %s: %w", filepath.Join(dir, n), err))
		}
	}
	return errors.Join(errs...)
}
