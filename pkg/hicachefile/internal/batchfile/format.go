// Package batchfile is the V1 batch file format alone: encoding a file's
// index entries, identity and trailer, decoding and checking them, and the
// checks a reader makes of one entry against the key it asked for. It never
// sees a store, an index of files or a directory.
//
// A batch file, all integers little-endian:
//
//	payload   pages back to back from offset 0
//	index     Count entries: keyLen u16, key, offset u64, length u64, crc u32
//	identity  the writer's identity (opaque here)
//	trailer   TrailerSize bytes:
//	            magic [8]    "HCBATCH1"
//	            version u32  Version
//	            count u32    number of index entries
//	            indexOff u64 offset of the index (= payload length)
//	            indexLen u64 length of the index in bytes
//	            indexCRC u32 CRC32C of the index bytes
//	            fp u64       fingerprint of the writer's pool
//	            identLen u32 length of the identity in bytes
//	            identCRC u32 CRC32C of the identity bytes
//	            crc u32      CRC32C of the 52 trailer bytes before it
//
// The last four bytes, the trailer's own checksum, are the file's Tag.
package batchfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

const (
	// Magic opens a batch file's trailer.
	Magic = "HCBATCH1"
	// Version is the format version a trailer records.
	Version = 2
	// TrailerSize is the size in bytes of a batch file's trailer.
	TrailerSize = 56
	// EntryFixed is the size of an index entry without its key.
	EntryFixed = 2 + 8 + 8 + 4
)

// ErrCorrupt is wrapped by every error of a file that fails a check.
var ErrCorrupt = errors.New("hicachefile: corrupt page")

// castagnoli is the CRC32C table: hardware accelerated on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Entry is one page of a batch file.
type Entry struct {
	// Key is the page's key.
	Key string
	// Off is the page's offset in the file.
	Off int64
	// Length is the page's length in bytes.
	Length int64
	// CRC is the CRC32C of the page's bytes.
	CRC uint32
}

// Trailer is the decoded fixed-size tail of a batch file.
type Trailer struct {
	// Count is the number of index entries.
	Count uint32
	// IndexOff is the offset of the index: the payload's length.
	IndexOff int64
	// IndexLen is the length of the index in bytes.
	IndexLen int64
	// IndexCRC is the CRC32C of the index bytes.
	IndexCRC uint32
	// FP is the fingerprint of the writer's pool.
	FP uint64
	// IdentLen is the length of the identity in bytes.
	IdentLen int64
	// IdentCRC is the CRC32C of the identity bytes.
	IdentCRC uint32
}

// IndexSize returns the bytes the index of a batch file takes for keys.
func IndexSize(keys []string) int64 {
	n := int64(0)
	for _, k := range keys {
		n += EntryFixed + int64(len(k))
	}
	return n
}

// AppendIndex appends the encoded index, the identity ident and the Trailer
// for entries to dst.
func AppendIndex(dst []byte, entries []Entry, fp uint64, ident []byte) []byte {
	start := len(dst)
	var indexOff int64
	for _, e := range entries {
		ent := len(dst)
		dst = AppendEntry(dst, e.Key, e.Off, e.Length)
		SetEntryCRC(dst[ent:], len(e.Key), e.CRC)
		indexOff = max(indexOff, e.Off+e.Length)
	}
	return AppendTrailer(dst, start, len(entries), indexOff, fp, ident)
}

// Tag returns the Trailer checksum at the end of b, the last bytes of a
// batch file: it differs between any two files whose index, identity or
// pool fingerprint differ.
func Tag(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(b[len(b)-4:])
}

// AppendEntry appends the index entry of key, whose page lies at off and
// is length bytes long, to dst, with a zero CRC32C: SetEntryCRC fills it in
// once the page is summed. It is AppendIndex's encoding of one entry.
func AppendEntry(dst []byte, key string, off, length int64) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(off))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(length))
	return binary.LittleEndian.AppendUint32(dst, 0)
}

// SetEntryCRC sets the CRC32C of the entry that starts ent with a key of
// keyLen bytes.
func SetEntryCRC(ent []byte, keyLen int, crc uint32) {
	binary.LittleEndian.PutUint32(ent[2+keyLen+16:], crc)
}

// AppendTrailer appends to dst, whose bytes from start are the count
// entries of an index (AppendEntry) of pages ending at indexOff, the
// identity ident and the Trailer: AppendIndex's output, for an index
// encoded in place.
func AppendTrailer(dst []byte, start, count int, indexOff int64, fp uint64, ident []byte) []byte {
	indexCRC := crc32.Checksum(dst[start:], castagnoli)
	indexLen := len(dst) - start
	dst = append(dst, ident...)
	t := len(dst)
	dst = append(dst, Magic...)
	dst = binary.LittleEndian.AppendUint32(dst, Version)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(count))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(indexOff))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(indexLen))
	dst = binary.LittleEndian.AppendUint32(dst, indexCRC)
	dst = binary.LittleEndian.AppendUint64(dst, fp)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(ident)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(ident, castagnoli))
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[t:], castagnoli))
}

// ParseTrailer decodes and checks the last TrailerSize bytes of a file of
// fileSize bytes.
func ParseTrailer(b []byte, fileSize int64) (Trailer, error) {
	if len(b) != TrailerSize || fileSize < TrailerSize {
		return Trailer{}, fmt.Errorf("%w: file of %d bytes has no Trailer", ErrCorrupt, fileSize)
	}
	if string(b[:8]) != Magic {
		return Trailer{}, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if got, want := binary.LittleEndian.Uint32(b[52:]), crc32.Checksum(b[:52], castagnoli); got != want {
		return Trailer{}, fmt.Errorf("%w: Trailer checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != Version {
		return Trailer{}, fmt.Errorf("%w: format version %d, want %d", ErrCorrupt, v, Version)
	}
	t := Trailer{
		Count:    binary.LittleEndian.Uint32(b[12:]),
		IndexOff: int64(binary.LittleEndian.Uint64(b[16:])),
		IndexLen: int64(binary.LittleEndian.Uint64(b[24:])),
		IndexCRC: binary.LittleEndian.Uint32(b[32:]),
		FP:       binary.LittleEndian.Uint64(b[36:]),
		IdentLen: int64(binary.LittleEndian.Uint32(b[44:])),
		IdentCRC: binary.LittleEndian.Uint32(b[48:]),
	}
	body := fileSize - TrailerSize
	if t.IndexOff < 0 || t.IndexLen < 0 || t.IndexOff > body || t.IndexLen > body-t.IndexOff || t.IdentLen != body-t.IndexOff-t.IndexLen {
		return Trailer{}, fmt.Errorf("%w: index at %d+%d and identity of %d bytes do not end at the Trailer (%d)",
			ErrCorrupt, t.IndexOff, t.IndexLen, t.IdentLen, body)
	}
	if int64(t.Count)*EntryFixed > t.IndexLen {
		return Trailer{}, fmt.Errorf("%w: %d entries cannot fit in %d index bytes", ErrCorrupt, t.Count, t.IndexLen)
	}
	return t, nil
}

// ParseIndex decodes and checks the index bytes described by t. Every entry
// it returns lies inside the payload, has a valid key, and starts at a
// multiple of its length.
func ParseIndex(b []byte, t Trailer) ([]Entry, error) {
	entries := make([]Entry, 0, t.Count)
	err := WalkIndex(b, t, func(key []byte, off, length int64, crc uint32, _ uint32) {
		entries = append(entries, Entry{Key: string(key), Off: off, Length: length, CRC: crc})
	})
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// WalkIndex checks the index bytes described by t, as ParseIndex does, and
// calls fn for each entry with its key (aliasing b), page offset, length,
// CRC32C, and the offset of the entry within the index. It allocates
// nothing, so that loading a store's files costs no garbage per page.
func WalkIndex(b []byte, t Trailer, fn func(key []byte, off, length int64, crc uint32, ent uint32)) error {
	if int64(len(b)) != t.IndexLen {
		return fmt.Errorf("%w: index is %d bytes, Trailer says %d", ErrCorrupt, len(b), t.IndexLen)
	}
	if t.IndexLen > math.MaxUint32 {
		return fmt.Errorf("%w: index of %d bytes", ErrCorrupt, t.IndexLen)
	}
	if got := crc32.Checksum(b, castagnoli); got != t.IndexCRC {
		return fmt.Errorf("%w: index checksum %08x, want %08x", ErrCorrupt, got, t.IndexCRC)
	}
	pos := 0
	for range t.Count {
		key, off, length, crc, err := DecodeEntry(b[pos:], t.IndexOff)
		if err != nil {
			return err
		}
		fn(key, off, length, crc, uint32(pos))
		pos += EntryFixed + len(key)
	}
	if pos != len(b) {
		return fmt.Errorf("%w: %d bytes after the last index entry", ErrCorrupt, len(b)-pos)
	}
	return nil
}

// DecodeEntry decodes and checks the index entry at the start of b, of a
// file whose payload is payload bytes.
func DecodeEntry(b []byte, payload int64) (key []byte, off, length int64, crc uint32, err error) {
	if len(b) < 2 {
		return nil, 0, 0, 0, fmt.Errorf("%w: index ends inside an entry", ErrCorrupt)
	}
	kl := int(binary.LittleEndian.Uint16(b))
	if len(b) < EntryFixed+kl {
		return nil, 0, 0, 0, fmt.Errorf("%w: index ends inside an entry", ErrCorrupt)
	}
	key = b[2 : 2+kl]
	rest := b[2+kl:]
	off = int64(binary.LittleEndian.Uint64(rest))
	length = int64(binary.LittleEndian.Uint64(rest[8:]))
	crc = binary.LittleEndian.Uint32(rest[16:])
	if err := checkKey(key); err != nil {
		return nil, 0, 0, 0, fmt.Errorf("%w: index entry: %v", ErrCorrupt, err)
	}
	if length <= 0 || off < 0 || off%length != 0 || off > payload-length {
		return nil, 0, 0, 0, fmt.Errorf("%w: entry %q at %d+%d lies outside the payload (%d bytes)", ErrCorrupt, key, off, length, payload)
	}
	return key, off, length, crc, nil
}

// checkKey rejects a key an entry may not hold: one that cannot be a file
// name component (empty, "." or "..", or holding '/' or NUL).
func checkKey(key []byte) error {
	if len(key) == 0 || len(key) <= 2 && (string(key) == "." || string(key) == "..") || !PlainKey(string(key)) {
		return fmt.Errorf("invalid key %q", key)
	}
	return nil
}
