package hicachefile

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
)

// File names. With the store's suffix S (see Config.suffix):
//
//	<key>S.bin                      old format, in Dir, as SGLang names it
//	.l<16 hex>S.tmp                 a temp file of Set, in Dir, locked before
//	                                it had a name (temp.go)
//	.<16 hex>S.tmp                  the same, where O_TMPFILE is refused
//	v1S/                            the store's V1 directory, in Dir
//	v1S/b<16 hex>S.batch.bin        a V1 batch file
//	v1S/.l<16 hex>S.tmp             a temp file of a V1 write
//	v1S/.<16 hex>S.tmp              the same, where O_TMPFILE is refused
//
// The V1 and temp names put a fixed-shape token before S, so a name is ours
// only when everything before S is exactly that token: "b…_a_model_0_1"
// never parses as a file of the store with suffix "_model_0_1", nor
// "_m_11_2" as one of "_m_1_2".
const (
	oldExt    = ".bin"
	batchExt  = ".batch.bin"
	tmpExt    = ".tmp"
	tokenHex  = 16
	maxName   = 255
	v1DirName = "v1"
)

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

// lockedTmpPrefix starts the names of temp files locked from birth: a
// reclaim may take one whose lock it gets at once, with no grace.
const lockedTmpPrefix = ".l"

// bornLocked reports whether the temp file name was locked before it had a
// name.
func bornLocked(name string) bool { return strings.HasPrefix(name, lockedTmpPrefix) }

// sglangTmpInfix separates a final old-format name from the rest of
// SGLang's temp file name for it: <key><suffix>.bin.tmp.<pid>.<tid>.<uuid hex>.
const sglangTmpInfix = oldExt + ".tmp."

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
