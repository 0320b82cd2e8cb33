//go:build !amd64 || purego

package crc32c

// haveCRC3 is false where crc32cPages has no assembly: Pages then
// checksums one page at a time with hash/crc32.
const haveCRC3 = false

// crc32cPages does no group where it has no assembly.
func crc32cPages(crcs *uint32, bufs *[]byte, bpp int, groups int) (done int) { return 0 }
