package hicachefile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
)

// File names. With the store's suffix S (see Config.suffix) and its
// identity digest I (see Config.identityDigest):
//
//	<key>S.bin                      old format, in Dir, as SGLang names it
//	.l<16 hex>-IS.tmp               a temp file of Set, in Dir, locked before
//	                                it had a name (temp.go)
//	.<16 hex>-IS.tmp                the same, where O_TMPFILE is refused
//	v1-IS/                          the store's V1 directory, in Dir
//	v1-IS/b<16 hex>S.batch.bin      a V1 batch file
//	v1-IS/.l<16 hex>-IS.tmp         a temp file of a V1 write
//	v1-IS/.<16 hex>-IS.tmp          the same, where O_TMPFILE is refused
//
// The V1 and temp names put a fixed-shape token before S, so a name is ours
// only when everything before S is exactly that token: "b…_a_model_0_1"
// never parses as a file of the store with suffix "_model_0_1", nor
// "_m_11_2" as one of "_m_1_2". Identities whose suffixes coincide (model
// "org/m" and "org-m"; MHA model "m" on TP rank 0 of 1 and MLA model
// "m_0_1") differ in I, so they never share a V1 directory or a temp name.
//
// Names of the earlier scheme, without I, are legacy (legacy.go):
// v1S/ and its batch and temp files, and .l<16 hex>S.tmp and
// .<16 hex>S.tmp in Dir.
const (
	oldExt   = ".bin"
	batchExt = ".batch.bin"
	tmpExt   = ".tmp"
	tokenHex = 16
	maxName  = 255
	// v1DirPrefix starts the name of a V1 directory: "v1-", the digest,
	// the suffix. The legacy "v1" + suffix never has '-' third, since a
	// suffix starts with '_' (or '.', for a component pool's store).
	v1DirPrefix = "v1-"
	// legacyV1Prefix starts the name of a legacy V1 directory: "v1" + suffix.
	legacyV1Prefix = "v1"
	digestHex      = 16
)

// identityDigest returns the digest that names the store's V1 directory
// and temp files: the first 8 bytes of the SHA-256 of c's identity fields,
// in lower-case hex. Those fields, joined by NUL bytes (no field can hold
// one), are "hicache-identity", "model=" + ModelName as configured ('/'
// kept), "mla=0" or "mla=1", "tp=<TPRank>/<TPSize>" unless IsMLA (MLA KV
// is the same on every TP rank), "pp=<PPRank>/<PPSize>", then
// "cp=<CPRank>/<CPSize>" when CPSize > 1 and "pool=<name>" for a component
// pool's store. c has its defaults filled in. Every Config field that tells one identity's pages
// from another's must be here: TestIdentityDigestCoversEveryField fails
// on a new field that is neither here nor listed as no part of an
// identity.
func (c Config) identityDigest() string {
	f := []string{"hicache-identity", "model=" + c.ModelName}
	if c.IsMLA {
		f = append(f, "mla=1")
	} else {
		f = append(f, "mla=0", fmt.Sprintf("tp=%d/%d", c.TPRank, c.TPSize))
	}
	f = append(f, fmt.Sprintf("pp=%d/%d", c.PPRank, c.PPSize))
	if c.CPSize > 1 {
		f = append(f, fmt.Sprintf("cp=%d/%d", c.CPRank, c.CPSize))
	}
	if c.component != "" {
		f = append(f, "pool="+c.component)
	}
	sum := sha256.Sum256([]byte(strings.Join(f, "\x00")))
	return hex.EncodeToString(sum[:digestHex/2])
}

// v1DirName returns the name of the store's V1 directory in Dir.
func (s *Store) v1DirName() string { return v1DirPrefix + s.digest + s.suffix }

// legacyV1DirName returns the name of the V1 directory of the earlier
// naming, shared by every identity of the store's suffix.
func (s *Store) legacyV1DirName() string { return legacyV1Prefix + s.suffix }

// checkKeyChars rejects keys that cannot be a file-name component.
func checkKeyChars(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	case key == "." || key == "..":
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	case strings.IndexByte(key, '/') >= 0 || strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%w: %q contains '/' or NUL", ErrInvalidKey, key)
	}
	return nil
}

// checkKeyBytes is checkKeyChars for a key still in a byte slice; it
// allocates only to report an error.
func checkKeyBytes(key []byte) error {
	if len(key) > 2 || (len(key) > 0 && key[0] != '.') {
		if bytes.IndexByte(key, '/') < 0 && bytes.IndexByte(key, 0) < 0 {
			return nil
		}
	}
	return checkKeyChars(string(key))
}

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

// newToken returns a random token of tokenHex hex digits. It needs to be
// unique, not secret: math/rand/v2's generator is seeded from the kernel's
// randomness in every process and makes no system call.
func newToken() string {
	var b [tokenHex / 2]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// isToken reports whether t is tokenHex lower-case hex digits.
func isToken(t string) bool {
	if len(t) != tokenHex {
		return false
	}
	for _, c := range []byte(t) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// batchName returns a new V1 batch file name.
func (s *Store) batchName() string { return "b" + newToken() + s.suffix + batchExt }

// tmpName returns a new temp file name.
func (s *Store) tmpName() string { return "." + newToken() + "-" + s.digest + s.suffix + tmpExt }

// isBatchName reports whether name is one of this store's V1 batch files.
func (s *Store) isBatchName(name string) bool {
	t, ok := strings.CutSuffix(name, s.suffix+batchExt)
	return ok && len(t) == 1+tokenHex && t[0] == 'b' && isToken(t[1:])
}

// lockedTmpName returns a new name for a temp file that is locked before
// it has a name (see place).
func (s *Store) lockedTmpName() string {
	return lockedTmpPrefix + newToken() + "-" + s.digest + s.suffix + tmpExt
}

// lockedTmpPrefix starts the names of temp files locked from birth: a
// reclaim may take one whose lock it gets at once, with no grace.
const lockedTmpPrefix = ".l"

// bornLocked reports whether the temp file name was locked before it had a
// name.
func bornLocked(name string) bool { return strings.HasPrefix(name, lockedTmpPrefix) }

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

// isTmpToken reports whether t is what comes before the digest of a temp
// file name: ".l" or "." and a token.
func isTmpToken(t string) bool {
	if tok, locked := strings.CutPrefix(t, lockedTmpPrefix); locked {
		return isToken(tok)
	}
	return len(t) == 1+tokenHex && t[0] == '.' && isToken(t[1:])
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

// sglangTmpInfix separates a final old-format name from the rest of
// SGLang's temp file name for it: <key><suffix>.bin.tmp.<pid>.<tid>.<uuid hex>.
const sglangTmpInfix = oldExt + ".tmp."

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

// isDigits reports whether t is a non-empty run of decimal digits.
func isDigits(t string) bool {
	for _, c := range []byte(t) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return t != ""
}

// isHex reports whether t is a non-empty run of lower-case hex digits.
func isHex(t string) bool {
	for _, c := range []byte(t) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return t != ""
}
