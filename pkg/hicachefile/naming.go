package hicachefile

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
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

// isTmpToken reports whether t is what comes before the digest of a temp
// file name: ".l" or "." and a token.
func isTmpToken(t string) bool {
	if tok, locked := strings.CutPrefix(t, lockedTmpPrefix); locked {
		return isToken(tok)
	}
	return len(t) == 1+tokenHex && t[0] == '.' && isToken(t[1:])
}

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
