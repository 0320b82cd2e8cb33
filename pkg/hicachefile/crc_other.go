//go:build !amd64

package hicachefile

// haveCRC3 is false where crc32cTriple has no assembly: pageCRCs then
// checksums one page at a time with hash/crc32.
const haveCRC3 = false

// crc32cTriple is never called where haveCRC3 is false.
func crc32cTriple(crcA, crcB, crcC uint32, a, b, c *byte, words int) (retA, retB, retC uint32) {
	panic("hicachefile: crc32cTriple without assembly")
}
