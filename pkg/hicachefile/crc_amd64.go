//go:build amd64

package hicachefile

import "golang.org/x/sys/cpu"

// haveCRC3 is set when the CPU has SSE4.2's CRC32 instruction, which
// crc32cTriple uses.
var haveCRC3 = cpu.X86.HasSSE42

// crc32cTriple updates three CRC32C values, not inverted, with words
// 8-byte words from each of a, b and c, in three chains at once.
//
//go:noescape
func crc32cTriple(crcA, crcB, crcC uint32, a, b, c *byte, words int) (retA, retB, retC uint32)
