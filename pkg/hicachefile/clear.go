//go:build linux

package hicachefile

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Clear removes this store's files from the directory: its batch files, its
// old-format files, its temp files and SGLang's temp files of its names
// (<key><suffix>.bin.tmp.<pid>.<tid>.<uuid>), and the batch files of its
// component pools, registered or not. After it returns, no key this
// store wrote exists or is served, through any interface. Every
// old-format file named <key><suffix>.bin goes, whatever the key: SGLang's
// naming cannot tell key "k_x" of model "m" from key "k" of model "x_m", so
// a model whose name ends with this one's loses such files (a miss for it,
// never a stale page for this store). Other models' and
// ranks' files stay otherwise. Anything else under a store name (a FIFO,
// socket, device, symlink or empty directory) is removed without being
// opened. A file that cannot be removed does not stop the others; the
// failures are joined in the error. A write in progress when Clear runs
// may lose its temp file and fail, or land after Clear returns: a batch
// file still being written with no name (a store without a bound) is not
// there for Clear to find, and is linked in once complete. Only what was
// written before Clear began is sure to be gone. Like a write, Clear
// follows a Dir removed or replaced under the store to the directory now
// at its path.
func (s *Store) Clear() error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	// Clear the directory now at the path Dir, as writes do: one removed
	// under the store can no longer be listed.
	s.followDir()
	s.scan.mu.Lock()
	defer s.scan.mu.Unlock()
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	defer s.scan.reset(s.idx)
	defer s.lru.ForgetAll(true)
	defer s.lru.ForgetAll(false)
	return errors.Join(
		s.removeMatching(s.topfd(), s.dir, func(n string) bool {
			return s.isOldName(n) || s.isTmpName(n) || s.isSGLangTmpName(n)
		}),
		s.removeMatching(s.v1fd(), s.v1Dir, func(n string) bool { return s.isBatchName(n) || s.isTmpName(n) }),
		s.clearLegacy(),
		s.clearComponents(),
		s.clearUnregisteredComponents(),
	)
}

// clearUnregisteredComponents clears the batch files of this identity's
// component pools that are not registered with s (written by another
// process, or by this one before a restart): the V1 directories in Dir
// named for this identity with a component pool's digest. A component
// page written before Clear must not be served after it, whichever store
// registers the pool next.
func (s *Store) clearUnregisteredComponents() error {
	if s.cfg.component != "" {
		return nil
	}
	names, err := readDirNamesAt(s.topfd())
	if err != nil {
		return fmt.Errorf("hicachefile: list %s: %w", s.dir, err)
	}
	var errs []error
	for _, n := range names {
		mid, ok := strings.CutPrefix(n, v1DirPrefix)
		if !ok {
			continue
		}
		if mid, ok = strings.CutSuffix(mid, s.suffix); !ok || len(mid) < digestHex+2 || mid[digestHex] != '.' {
			continue
		}
		digest, pool := mid[:digestHex], mid[digestHex+1:]
		if checkKeyChars(pool) != nil || isKVPool(pool) || s.components.get(pool) != nil {
			continue
		}
		cfg := s.cfg
		cfg.component = pool
		if cfg.identityDigest() != digest {
			continue
		}
		cfg.NoWatch = true
		c, err := New(cfg)
		if err != nil {
			errs = append(errs, fmt.Errorf("hicachefile: pool %q: %w", pool, err))
			continue
		}
		errs = append(errs, c.Clear(), c.Close())
	}
	return errors.Join(errs...)
}

// removeMatching removes the files in dir whose names match, without
// opening them; an empty directory under such a name goes too.
func (s *Store) removeMatching(dirfd int, dir string, match func(string) bool) error {
	names, err := readDirNamesAt(dirfd)
	if err != nil {
		return fmt.Errorf("hicachefile: list %s: %w", dir, err)
	}
	var errs []error
	for _, n := range names {
		if !match(n) {
			continue
		}
		err := s.sys.Unlinkat(dirfd, n, 0)
		if err == unix.EISDIR {
			err = s.sys.Unlinkat(dirfd, n, unix.AT_REMOVEDIR)
		}
		if err != nil && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("hicachefile: remove %s: %w", filepath.Join(dir, n), err))
		}
	}
	return errors.Join(errs...)
}
