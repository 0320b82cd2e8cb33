package hicachefile

import (
	"hash/crc32"
	"unsafe"
)

// pageCRCs sets crcs[j] to the CRC32C of page j, the bpp buffers
// bufs[j*bpp:(j+1)*bpp], for every j of crcs.
//
// hash/crc32 runs three chains at once only within a buffer of 504 bytes
// or more; below that it runs one, and a CPU spends most of its time
// waiting on each step's result (half the speed, on this project's
// machine, for the 256-byte buffers of a 512-byte seed page). pageCRCs
// runs three pages at once instead, one chain each, over buffers of up
// to crc3Max bytes; larger ones, and the pages left over, go to
// hash/crc32.
func pageCRCs(bufs [][]byte, bpp int, crcs []uint32) {
	n := len(crcs)
	j := 0
	if haveCRC3 {
		for ; j+3 <= n; j += 3 {
			a := bufs[j*bpp : (j+1)*bpp]
			b := bufs[(j+1)*bpp : (j+2)*bpp]
			c := bufs[(j+2)*bpp : (j+3)*bpp]
			ca, cb, cc := ^uint32(0), ^uint32(0), ^uint32(0)
			for k := range bpp {
				x, y, z := a[k], b[k], c[k]
				w := len(x) / 8
				if len(y) != len(x) || len(z) != len(x) || len(x) > crc3Max || w == 0 {
					ca = ^crc32.Update(^ca, castagnoli, x)
					cb = ^crc32.Update(^cb, castagnoli, y)
					cc = ^crc32.Update(^cc, castagnoli, z)
					continue
				}
				ca, cb, cc = crc32cTriple(ca, cb, cc, unsafe.SliceData(x), unsafe.SliceData(y), unsafe.SliceData(z), w)
				if r := w * 8; r < len(x) {
					ca = ^crc32.Update(^ca, castagnoli, x[r:])
					cb = ^crc32.Update(^cb, castagnoli, y[r:])
					cc = ^crc32.Update(^cc, castagnoli, z[r:])
				}
			}
			crcs[j], crcs[j+1], crcs[j+2] = ^ca, ^cb, ^cc
		}
	}
	for ; j < n; j++ {
		crc := uint32(0)
		for _, x := range bufs[j*bpp : (j+1)*bpp] {
			crc = crc32.Update(crc, castagnoli, x)
		}
		crcs[j] = crc
	}
}

// crc3Max is the largest buffer pageCRCs checksums three pages at a
// time: from 504 bytes, hash/crc32 runs three chains within the buffer.
const crc3Max = 4096
