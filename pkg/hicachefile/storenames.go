//go:build linux

package hicachefile

import (
	"fmt"
	"strings"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
)

// The names of one store's files: the name grammar of naming.go with the
// store's suffix.

// validKey reports whether checkKey accepts key, without building an
// error: the check a read makes of every key it is given.
func (s *Store) validKey(key string) bool {
	n := len(key)
	if n == 0 || n+len(s.suffix)+len(oldExt) > maxName || n <= 2 && (key == "." || key == "..") {
		return false
	}
	return batchfile.PlainKey(key)
}

// checkKey rejects keys that cannot name this store's old-format file.
func (s *Store) checkKey(key string) error {
	if err := checkKeyChars(key); err != nil {
		return err
	}
	if n := len(key) + len(s.suffix) + len(oldExt); n > maxName {
		return fmt.Errorf("%w: file name of %d bytes exceeds %d", ErrInvalidKey, n, maxName)
	}
	return nil
}

// oldName is the old-format file name of key.
func (s *Store) oldName(key string) string { return key + s.suffix + oldExt }

// batchName returns a new V1 batch file name.
func (s *Store) batchName() string { return "b" + newToken() + s.suffix + batchExt }

// tmpName returns a new temp file name.
func (s *Store) tmpName() string { return "." + newToken() + "-" + s.digest + s.suffix + tmpExt }

// v1DirName returns the name of the store's V1 directory in Dir.
func (s *Store) v1DirName() string { return v1DirPrefix + s.digest + s.suffix }

// legacyV1DirName returns the name of the V1 directory of the earlier
// naming, shared by every identity of the store's suffix.
func (s *Store) legacyV1DirName() string { return legacyV1Prefix + s.suffix }

// isBatchName reports whether name is one of this store's V1 batch files.
func (s *Store) isBatchName(name string) bool {
	t, ok := strings.CutSuffix(name, s.suffix+batchExt)
	return ok && len(t) == 1+tokenHex && t[0] == 'b' && isToken(t[1:])
}

// lockedTmpName returns a new name for a temp file that is locked before
// it has a name.
func (s *Store) lockedTmpName() string {
	return lockedTmpPrefix + newToken() + "-" + s.digest + s.suffix + tmpExt
}

// isTmpName reports whether name is one of this store's temp files.
func (s *Store) isTmpName(name string) bool {
	t, ok := strings.CutSuffix(name, "-"+s.digest+s.suffix+tmpExt)
	return ok && isTmpToken(t)
}

// isLegacyTmpName reports whether name is a temp file of the earlier
// naming for the store's suffix: whose, among the identities of that
// suffix, it cannot tell.
func (s *Store) isLegacyTmpName(name string) bool {
	t, ok := strings.CutSuffix(name, s.suffix+tmpExt)
	return ok && isTmpToken(t)
}

// isOldName reports whether name is named like this store's old-format
// file: SGLang's key+suffix+".bin" for any valid key. That is ambiguous when
// the key holds '_': "k_a" under "_model_0_1" and "k" under "_a_model_0_1"
// name the same file. Such names are taken as ours, so that Clear and
// eviction leave no page of this store behind: a model whose name ends with
// this one's may lose such files (a miss), but no page this store wrote
// survives its Clear (a stale page).
func (s *Store) isOldName(name string) bool {
	k, ok := strings.CutSuffix(name, s.suffix+oldExt)
	return ok && checkKeyChars(k) == nil
}

// isSGLangTmpName reports whether name is a temp file SGLang's HiCacheFile
// writes for one of this store's old-format names.
func (s *Store) isSGLangTmpName(name string) bool {
	i := strings.LastIndex(name, sglangTmpInfix)
	if i < 0 || !s.isOldName(name[:i+len(oldExt)]) {
		return false
	}
	f := strings.Split(name[i+len(sglangTmpInfix):], ".")
	return len(f) == 3 && isDigits(f[0]) && isDigits(f[1]) && isHex(f[2])
}
