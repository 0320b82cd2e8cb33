package hicachefile

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
)

// The V1 batch file format. All integers are little-endian.
//
//	payload   pages back to back from offset 0
//	index     count entries: keyLen u16, key, offset u64, length u64, crc u32
//	identity  the writing store's identity (see appendIdentity)
//	trailer   trailerSize bytes:
//	            magic [8]    "HCBATCH1"
//	            version u32  formatVersion
//	            count u32    number of index entries
//	            indexOff u64 offset of the index (= payload length)
//	            indexLen u64 length of the index in bytes
//	            indexCRC u32 CRC32C of the index bytes
//	            fp u64       fingerprint of the writer's pool
//	            identLen u32 length of the identity in bytes
//	            identCRC u32 CRC32C of the identity bytes
//	            crc u32      CRC32C of the 52 trailer bytes before it
const (
	batchMagic    = "HCBATCH1"
	formatVersion = 2
	trailerSize   = TrailerSize
	// entryFixed is the size of an index entry without its key.
	entryFixed = 2 + 8 + 8 + 4
	// identityFixed is the size of an identity without its model name.
	identityFixed = 4*4 + 1 + 2
)

// castagnoli is the CRC32C table: hardware accelerated on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// indexEntry is one page of a batch file.
type indexEntry struct {
	key    string
	off    int64
	length int64
	crc    uint32
}

// trailer is the decoded fixed-size tail of a batch file.
type trailer struct {
	count    uint32
	indexOff int64
	indexLen int64
	indexCRC uint32
	fp       uint64
	identLen int64
	identCRC uint32
}

// IndexSize returns the bytes the index of a batch file takes for keys.
func IndexSize(keys []string) int64 {
	n := int64(0)
	for _, k := range keys {
		n += entryFixed + int64(len(k))
	}
	return n
}

// IdentitySize returns the bytes the writer's identity takes in a batch file
// written by a store of the model modelName: 19 + len(modelName).
func IdentitySize(modelName string) int64 { return identityFixed + int64(len(modelName)) }

// TrailerSize is the size in bytes of a batch file's trailer. A batch file
// holding pages P with keys K, written by a store of model M, is
// sum(len(P)) + IndexSize(K) + IdentitySize(M) + TrailerSize bytes long.
const TrailerSize = 56

// appendIndex appends the encoded index, the identity ident and the trailer
// for entries to dst.
func appendIndex(dst []byte, entries []indexEntry, fp uint64, ident []byte) []byte {
	start := len(dst)
	var indexOff int64
	for _, e := range entries {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(e.key)))
		dst = append(dst, e.key...)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(e.off))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(e.length))
		dst = binary.LittleEndian.AppendUint32(dst, e.crc)
		indexOff = max(indexOff, e.off+e.length)
	}
	index := dst[start:]
	indexCRC := crc32.Checksum(index, castagnoli)
	indexLen := len(index)
	dst = append(dst, ident...)
	t := len(dst)
	dst = append(dst, batchMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, formatVersion)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(entries)))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(indexOff))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(indexLen))
	dst = binary.LittleEndian.AppendUint32(dst, indexCRC)
	dst = binary.LittleEndian.AppendUint64(dst, fp)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(ident)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(ident, castagnoli))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[t:], castagnoli))
	return dst
}

// fileTag returns the trailer checksum at the end of b, the last bytes of a
// batch file: it differs between any two files whose index, identity or
// pool fingerprint differ.
func fileTag(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(b[len(b)-4:])
}

// appendEntry appends the index entry of key, whose page lies at off and
// is length bytes long, to dst, with a zero CRC32C: setEntryCRC fills it in
// once the page is summed. It is appendIndex's encoding of one entry.
func appendEntry(dst []byte, key string, off, length int64) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(off))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(length))
	return binary.LittleEndian.AppendUint32(dst, 0)
}

// setEntryCRC sets the CRC32C of the entry that starts ent with a key of
// keyLen bytes.
func setEntryCRC(ent []byte, keyLen int, crc uint32) {
	binary.LittleEndian.PutUint32(ent[2+keyLen+16:], crc)
}

// appendTrailer appends to dst, whose bytes from start are the count
// entries of an index (appendEntry) of pages ending at indexOff, the
// identity ident and the trailer: appendIndex's output, for an index
// encoded in place.
func appendTrailer(dst []byte, start, count int, indexOff int64, fp uint64, ident []byte) []byte {
	indexCRC := crc32.Checksum(dst[start:], castagnoli)
	indexLen := len(dst) - start
	dst = append(dst, ident...)
	t := len(dst)
	dst = append(dst, batchMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, formatVersion)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(count))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(indexOff))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(indexLen))
	dst = binary.LittleEndian.AppendUint32(dst, indexCRC)
	dst = binary.LittleEndian.AppendUint64(dst, fp)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(ident)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(ident, castagnoli))
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[t:], castagnoli))
}

// parseTrailer decodes and checks the last trailerSize bytes of a file of
// fileSize bytes.
func parseTrailer(b []byte, fileSize int64) (trailer, error) {
	if len(b) != trailerSize || fileSize < trailerSize {
		return trailer{}, fmt.Errorf("%w: file of %d bytes has no trailer", ErrCorrupt, fileSize)
	}
	if string(b[:8]) != batchMagic {
		return trailer{}, fmt.Errorf("%w: bad magic", ErrCorrupt)
	}
	if got, want := binary.LittleEndian.Uint32(b[52:]), crc32.Checksum(b[:52], castagnoli); got != want {
		return trailer{}, fmt.Errorf("%w: trailer checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return trailer{}, fmt.Errorf("%w: format version %d, want %d", ErrCorrupt, v, formatVersion)
	}
	t := trailer{
		count:    binary.LittleEndian.Uint32(b[12:]),
		indexOff: int64(binary.LittleEndian.Uint64(b[16:])),
		indexLen: int64(binary.LittleEndian.Uint64(b[24:])),
		indexCRC: binary.LittleEndian.Uint32(b[32:]),
		fp:       binary.LittleEndian.Uint64(b[36:]),
		identLen: int64(binary.LittleEndian.Uint32(b[44:])),
		identCRC: binary.LittleEndian.Uint32(b[48:]),
	}
	body := fileSize - trailerSize
	if t.indexOff < 0 || t.indexLen < 0 || t.indexOff > body || t.indexLen > body-t.indexOff || t.identLen != body-t.indexOff-t.indexLen {
		return trailer{}, fmt.Errorf("%w: index at %d+%d and identity of %d bytes do not end at the trailer (%d)",
			ErrCorrupt, t.indexOff, t.indexLen, t.identLen, body)
	}
	if int64(t.count)*entryFixed > t.indexLen {
		return trailer{}, fmt.Errorf("%w: %d entries cannot fit in %d index bytes", ErrCorrupt, t.count, t.indexLen)
	}
	return t, nil
}

// parseIndex decodes and checks the index bytes described by t. Every entry
// it returns lies inside the payload, has a valid key, and starts at a
// multiple of its length.
func parseIndex(b []byte, t trailer) ([]indexEntry, error) {
	entries := make([]indexEntry, 0, t.count)
	err := walkIndex(b, t, func(key []byte, off, length int64, crc uint32, _ uint32) {
		entries = append(entries, indexEntry{key: string(key), off: off, length: length, crc: crc})
	})
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// walkIndex checks the index bytes described by t, as parseIndex does, and
// calls fn for each entry with its key (aliasing b), page offset, length,
// CRC32C, and the offset of the entry within the index. It allocates
// nothing, so that loading a store's files costs no garbage per page.
func walkIndex(b []byte, t trailer, fn func(key []byte, off, length int64, crc uint32, ent uint32)) error {
	if int64(len(b)) != t.indexLen {
		return fmt.Errorf("%w: index is %d bytes, trailer says %d", ErrCorrupt, len(b), t.indexLen)
	}
	if t.indexLen > math.MaxUint32 {
		return fmt.Errorf("%w: index of %d bytes", ErrCorrupt, t.indexLen)
	}
	if got := crc32.Checksum(b, castagnoli); got != t.indexCRC {
		return fmt.Errorf("%w: index checksum %08x, want %08x", ErrCorrupt, got, t.indexCRC)
	}
	pos := 0
	for range t.count {
		key, off, length, crc, err := decodeEntry(b[pos:], t.indexOff)
		if err != nil {
			return err
		}
		fn(key, off, length, crc, uint32(pos))
		pos += entryFixed + len(key)
	}
	if pos != len(b) {
		return fmt.Errorf("%w: %d bytes after the last index entry", ErrCorrupt, len(b)-pos)
	}
	return nil
}

// decodeEntry decodes and checks the index entry at the start of b, of a
// file whose payload is payload bytes.
func decodeEntry(b []byte, payload int64) (key []byte, off, length int64, crc uint32, err error) {
	if len(b) < 2 {
		return nil, 0, 0, 0, fmt.Errorf("%w: index ends inside an entry", ErrCorrupt)
	}
	kl := int(binary.LittleEndian.Uint16(b))
	if len(b) < entryFixed+kl {
		return nil, 0, 0, 0, fmt.Errorf("%w: index ends inside an entry", ErrCorrupt)
	}
	key = b[2 : 2+kl]
	rest := b[2+kl:]
	off = int64(binary.LittleEndian.Uint64(rest))
	length = int64(binary.LittleEndian.Uint64(rest[8:]))
	crc = binary.LittleEndian.Uint32(rest[16:])
	if err := checkKeyBytes(key); err != nil {
		return nil, 0, 0, 0, fmt.Errorf("%w: index entry: %v", ErrCorrupt, err)
	}
	if length <= 0 || off < 0 || off%length != 0 || off > payload-length {
		return nil, 0, 0, 0, fmt.Errorf("%w: entry %q at %d+%d lies outside the payload (%d bytes)", ErrCorrupt, key, off, length, payload)
	}
	return key, off, length, crc, nil
}

// identity is who wrote a batch file: the store's Config fields that name
// its files.
type identity struct {
	model          string
	tpRank, tpSize uint32
	ppRank, ppSize uint32
	mla            bool
}

// identityOf returns the identity of a store of cfg, defaults filled in.
func identityOf(cfg Config) identity {
	return identity{model: cfg.ModelName, tpRank: uint32(cfg.TPRank), tpSize: uint32(cfg.TPSize),
		ppRank: uint32(cfg.PPRank), ppSize: uint32(cfg.PPSize), mla: cfg.IsMLA}
}

// appendIdentity appends the encoded identity to dst:
//
//	tpRank u32, tpSize u32, ppRank u32, ppSize u32,
//	flags u8 (bit 0: MLA), modelLen u16, model modelLen bytes
func appendIdentity(dst []byte, id identity) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, id.tpRank)
	dst = binary.LittleEndian.AppendUint32(dst, id.tpSize)
	dst = binary.LittleEndian.AppendUint32(dst, id.ppRank)
	dst = binary.LittleEndian.AppendUint32(dst, id.ppSize)
	var flags byte
	if id.mla {
		flags |= 1
	}
	dst = append(dst, flags)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(id.model)))
	return append(dst, id.model...)
}

// parseIdentity decodes and checks the identity bytes described by t.
func parseIdentity(b []byte, t trailer) (identity, error) {
	if int64(len(b)) != t.identLen {
		return identity{}, fmt.Errorf("%w: identity is %d bytes, trailer says %d", ErrCorrupt, len(b), t.identLen)
	}
	if got := crc32.Checksum(b, castagnoli); got != t.identCRC {
		return identity{}, fmt.Errorf("%w: identity checksum %08x, want %08x", ErrCorrupt, got, t.identCRC)
	}
	if len(b) < identityFixed || b[16]&^1 != 0 || int(binary.LittleEndian.Uint16(b[17:])) != len(b)-identityFixed {
		return identity{}, fmt.Errorf("%w: malformed identity of %d bytes", ErrCorrupt, len(b))
	}
	return identity{
		tpRank: binary.LittleEndian.Uint32(b), tpSize: binary.LittleEndian.Uint32(b[4:]),
		ppRank: binary.LittleEndian.Uint32(b[8:]), ppSize: binary.LittleEndian.Uint32(b[12:]),
		mla: b[16]&1 != 0, model: string(b[identityFixed:]),
	}, nil
}

// key returns a hash of the parts of id that must match for a store to
// serve a page: all of them, but the TP rank and size of an MLA store,
// whose KV is the same on every TP rank (its file names leave them out).
func (id identity) key() uint64 {
	if id.mla {
		id.tpRank, id.tpSize = 0, 0
	}
	// The encoded identity names each field unambiguously; hashing it
	// takes no formatting, which New would pay once per batch file.
	var buf [64]byte
	return fnv64a(appendIdentity(buf[:0], id))
}

// fnv64a returns the 64-bit FNV-1a hash of b, as hash/fnv's New64a would,
// without allocating one.
func fnv64a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// matchKey combines a pool fingerprint with an identity key: the value the
// index keeps for every copy, and a store compares with its own.
func matchKey(fp, identKey uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], fp)
	binary.LittleEndian.PutUint64(b[8:], identKey)
	return fnv64a(b[:])
}

// Location is where BatchSetV1 stored a key's page: Length bytes at Offset
// in the batch file at Path, the page's buffers in GetPageBufferMeta order.
type Location struct {
	// Path is the batch file's path.
	Path string
	// Offset and Length are where the page lies in the file, in bytes.
	Offset, Length int64
}
