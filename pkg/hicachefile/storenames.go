//go:build linux

package hicachefile

import (
	"fmt"
	"strings"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
)

// names are the names of one store's files: the name grammar of naming.go
// with the store's suffix and identity digest. A value, with no access to
// the store; Store embeds it.
type names struct {
	suffix string // Config.suffix: SGLang's
	digest string // Config.identityDigest
}

// validKey reports whether checkKey accepts key, without building an
// error: the check a read makes of every key it is given.
func (n names) validKey(key string) bool {
	k := len(key)
	if k == 0 || k+len(n.suffix)+len(oldExt) > maxName || k <= 2 && (key == "." || key == "..") {
		return false
	}
	return batchfile.PlainKey(key)
}

// checkKey rejects keys that cannot name this store's old-format file.
func (n names) checkKey(key string) error {
	if err := checkKeyChars(key); err != nil {
		return err
	}
	if l := len(key) + len(n.suffix) + len(oldExt); l > maxName {
		return fmt.Errorf("%w: file name of %d bytes exceeds %d", ErrInvalidKey, l, maxName)
	}
	return nil
}

// oldName is the old-format file name of key.
func (n names) oldName(key string) string { return key + n.suffix + oldExt }

// batchName returns a new V1 batch file name.
func (n names) batchName() string { return "b" + newToken() + n.suffix + batchExt }

// tmpName returns a new temp file name.
func (n names) tmpName() string { return "." + newToken() + "-" + n.digest + n.suffix + tmpExt }

// v1DirName returns the name of the store's V1 directory in Dir.
func (n names) v1DirName() string { return v1DirPrefix + n.digest + n.suffix }

// legacyV1DirName returns the name of the V1 directory of the earlier
// naming, shared by every identity of the store's suffix.
func (n names) legacyV1DirName() string { return legacyV1Prefix + n.suffix }

// isBatchName reports whether name is one of this store's V1 batch files.
func (n names) isBatchName(name string) bool {
	t, ok := strings.CutSuffix(name, n.suffix+batchExt)
	return ok && len(t) == 1+tokenHex && t[0] == 'b' && isToken(t[1:])
}

// lockedTmpName returns a new name for a temp file that is locked before
// it has a name.
func (n names) lockedTmpName() string {
	return lockedTmpPrefix + newToken() + "-" + n.digest + n.suffix + tmpExt
}

// isTmpName reports whether name is one of this store's temp files.
func (n names) isTmpName(name string) bool {
	t, ok := strings.CutSuffix(name, "-"+n.digest+n.suffix+tmpExt)
	return ok && isTmpToken(t)
}

// isLegacyTmpName reports whether name is a temp file of the earlier
// naming for the store's suffix: whose, among the identities of that
// suffix, it cannot tell.
func (n names) isLegacyTmpName(name string) bool {
	t, ok := strings.CutSuffix(name, n.suffix+tmpExt)
	return ok && isTmpToken(t)
}

// isOldName reports whether name is named like this store's old-format
// file: SGLang's key+suffix+".bin" for any valid key. That is ambiguous when
// the key holds '_': "k_a" under "_model_0_1" and "k" under "_a_model_0_1"
// name the same file. Such names are taken as ours, so that Clear and
// eviction leave no page of this store behind: a model whose name ends with
// this one's may lose such files (a miss), but no page this store wrote
// survives its Clear (a stale page).
func (n names) isOldName(name string) bool {
	k, ok := strings.CutSuffix(name, n.suffix+oldExt)
	return ok && checkKeyChars(k) == nil
}

// isSGLangTmpName reports whether name is a temp file SGLang's HiCacheFile
// writes for one of this store's old-format names.
func (n names) isSGLangTmpName(name string) bool {
	i := strings.LastIndex(name, sglangTmpInfix)
	if i < 0 || !n.isOldName(name[:i+len(oldExt)]) {
		return false
	}
	f := strings.Split(name[i+len(sglangTmpInfix):], ".")
	return len(f) == 3 && isDigits(f[0]) && isDigits(f[1]) && isHex(f[2])
}
