//go:build amd64 && !purego

package crc32c

import "golang.org/x/sys/cpu"

// haveCRC3 is set when the CPU has SSE4.2's CRC32 instruction, which
// crc32cPages uses.
var haveCRC3 = cpu.X86.HasSSE42

// crc32cPages checksums groups of three pages, three chains at once, and
// returns how many groups it did (see pages_amd64.s): it stops before a
// group whose buffers do not suit it. bufs points at the first of the
// groups' 3*groups*bpp slice headers, crcs at room for 3*groups CRCs.
//
//go:noescape
func crc32cPages(crcs *uint32, bufs *[]byte, bpp int, groups int) (done int)
