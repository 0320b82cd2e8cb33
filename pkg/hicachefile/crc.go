package hicachefile

import "hash/crc32"

// pageCRCs sets crcs[j] to the CRC32C of page j, the bpp buffers
// bufs[j*bpp:(j+1)*bpp], for every j of crcs.
//
// hash/crc32 runs three chains at once only within a buffer of 504 bytes
// or more; below that it runs one, and the CPU spends most of its time
// waiting on each step's result. pageCRCs runs three pages at once
// instead, one chain each (crc32cPages, with SSE4.2), when the three
// pages' buffers have the same lengths, multiples of 8 of up to crc3Max
// bytes, as the pages of one pool do; other pages, and the one or two
// left over, go to hash/crc32. It takes 0.47 [0.47-0.47] of hash/crc32's
// time for 512-byte seed pages of two 256-byte buffers (median of 3 runs
// of go test -run=NONE -bench=PageCRCs, 2026-11-27, this project's 2-core
// VM, whose kernel reports "Intel(R) Xeon(R) Processor").
func pageCRCs(bufs [][]byte, bpp int, crcs []uint32) {
	n := len(crcs)
	bufs = bufs[:n*bpp]
	j := 0
	for haveCRC3 && bpp > 0 && j+3 <= n {
		j += 3 * crc32cPages(&crcs[j], &bufs[j*bpp], bpp, (n-j)/3)
		if j+3 > n {
			break
		}
		// A group whose buffers do not suit: its three pages one by one.
		for range 3 {
			crcs[j] = pageCRC(bufs[j*bpp : (j+1)*bpp])
			j++
		}
	}
	for ; j < n; j++ {
		crcs[j] = pageCRC(bufs[j*bpp : (j+1)*bpp])
	}
}

// pageCRC returns the CRC32C of the page made of bufs.
func pageCRC(bufs [][]byte) uint32 {
	crc := uint32(0)
	for _, b := range bufs {
		crc = crc32.Update(crc, castagnoli, b)
	}
	return crc
}

// crc3Max is the largest buffer crc32cPages checksums (crc_amd64.s says
// it as a literal): from 504 bytes hash/crc32 runs three chains within
// the buffer, and past a few KiB three pages at once no longer gain.
const crc3Max = 4096
