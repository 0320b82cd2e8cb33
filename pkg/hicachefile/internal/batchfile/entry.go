package batchfile

import (
	"encoding/binary"
	"unsafe"
)

// Match reports whether the index entry at e in ents is key's, for
// a page at off of length bytes: the full key, the offset and the length.
// Its bounds are checked.
func Match(ents []byte, e int64, key string, off, length int64) bool {
	n := int64(len(key))
	if e < 0 || e+EntryFixed+n > int64(len(ents)) {
		return false
	}
	b := ents[e : e+EntryFixed+n]
	rest := b[2+n:]
	return int64(binary.LittleEndian.Uint16(b)) == n && SameKey(b[2:2+n], key) &&
		int64(binary.LittleEndian.Uint64(rest)) == off && int64(binary.LittleEndian.Uint64(rest[8:])) == length
}

// EntryCRC returns the CRC32C of the entry at e in ents, of a key of
// keyLen bytes, that Match accepted.
func EntryCRC(ents []byte, e int64, keyLen int) uint32 {
	return binary.LittleEndian.Uint32(ents[e+2+int64(keyLen)+16:])
}

// NextEntry returns the offset in ents of the entry after the one at e,
// by e's own length field, or -1 when e's entry does not lie within ents.
func NextEntry(ents []byte, e int64) int64 {
	if e < 0 || e+EntryFixed > int64(len(ents)) {
		return -1
	}
	next := e + EntryFixed + int64(binary.LittleEndian.Uint16(ents[e:]))
	if next > int64(len(ents)) {
		return -1
	}
	return next
}

// SameKey reports whether b holds key. SGLang's keys, sha256 hex digests,
// are 64 bytes: those are compared as eight words, with no call.
func SameKey(b []byte, key string) bool {
	if len(b) != 64 || len(key) != 64 {
		return string(b) == key
	}
	k := unsafe.Slice(unsafe.StringData(key), 64)
	b = b[:64:64]
	le := binary.LittleEndian
	x := (le.Uint64(b) ^ le.Uint64(k)) | (le.Uint64(b[8:]) ^ le.Uint64(k[8:])) |
		(le.Uint64(b[16:]) ^ le.Uint64(k[16:])) | (le.Uint64(b[24:]) ^ le.Uint64(k[24:])) |
		(le.Uint64(b[32:]) ^ le.Uint64(k[32:])) | (le.Uint64(b[40:]) ^ le.Uint64(k[40:])) |
		(le.Uint64(b[48:]) ^ le.Uint64(k[48:])) | (le.Uint64(b[56:]) ^ le.Uint64(k[56:]))
	return x == 0
}
