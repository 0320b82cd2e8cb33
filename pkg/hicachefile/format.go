package hicachefile

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
)

// The V1 batch file format is internal/batchfile's (docs/format.md); this
// file holds what a store adds to it: the sizes a caller may plan with, and
// the identity of the store that wrote a file.
const (
	// identityFixed is the size of an identity without its model name.
	identityFixed = 4*4 + 1 + 2
)

// castagnoli is the CRC32C table: hardware accelerated on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Names the store's code shares with the format's.
const (
	trailerSize = batchfile.TrailerSize
	entryFixed  = batchfile.EntryFixed
)

type trailer = batchfile.Trailer

// IndexSize returns the bytes the index of a batch file takes for keys.
func IndexSize(keys []string) int64 { return batchfile.IndexSize(keys) }

// IdentitySize returns the bytes the writer's identity takes in a batch file
// written by a store of the model modelName: 19 + len(modelName).
func IdentitySize(modelName string) int64 { return identityFixed + int64(len(modelName)) }

// TrailerSize is the size in bytes of a batch file's trailer. A batch file
// holding pages P with keys K, written by a store of model M, is
// sum(len(P)) + IndexSize(K) + IdentitySize(M) + TrailerSize bytes long.
const TrailerSize = batchfile.TrailerSize

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
	if int64(len(b)) != t.IdentLen {
		return identity{}, fmt.Errorf("%w: identity is %d bytes, trailer says %d", ErrCorrupt, len(b), t.IdentLen)
	}
	if got := crc32.Checksum(b, castagnoli); got != t.IdentCRC {
		return identity{}, fmt.Errorf("%w: identity checksum %08x, want %08x", ErrCorrupt, got, t.IdentCRC)
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
