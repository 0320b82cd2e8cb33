package batchfile

import (
	"encoding/binary"
	"unsafe"
)

// PlainKey reports whether key holds neither '/' nor NUL, eight bytes at
// a time: a byte b of a word x is zero when (b-1) &^ b has its top bit set,
// and a '/' when b^'/' is zero.
func PlainKey(key string) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
		slash = 0x2f2f2f2f2f2f2f2f
	)
	i := 0
	for ; i+8 <= len(key); i += 8 {
		x := binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(key[i:]), 8))
		y := x ^ slash
		if ((x-ones)&^x|(y-ones)&^y)&highs != 0 {
			return false
		}
	}
	for ; i < len(key); i++ {
		if key[i] == 0 || key[i] == '/' {
			return false
		}
	}
	return true
}
