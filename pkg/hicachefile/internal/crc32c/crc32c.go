// Package crc32c checksums pool pages with CRC32C (Castagnoli), the
// checksum of the batch file format: a page is one or more buffers, and
// Pages checksums many pages of one pool at once, three at a time in
// SSE4.2 assembly on amd64 (built without the purego tag), with
// hash/crc32 elsewhere and for pages whose buffers do not suit.
package crc32c

import "hash/crc32"

// castagnoli is the CRC32C table: hardware accelerated on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Pages sets crcs[j] to the CRC32C of page j, the bpp buffers
// bufs[j*bpp:(j+1)*bpp], for every j of crcs.
//
// hash/crc32 runs three chains at once only within a buffer of 504 bytes
// or more; below that it runs one, and the CPU spends most of its time
// waiting on each step's result. Pages runs three pages at once
// instead, one chain each (crc32cPages, with SSE4.2), when the three
// pages' buffers have the same lengths, multiples of 8 of up to crc3Max
// bytes, as the pages of one pool do; other pages, and the one or two
// left over, go to hash/crc32. It takes 0.47 [0.47-0.47] of hash/crc32's
// time for 512-byte seed pages of two 256-byte buffers (median of 3 runs
// of go test -run=NONE -bench=PageCRCs, 2026-11-27, this project's 2-core
// VM, whose kernel reports "Intel(R) Xeon(R) Processor").
func Pages(bufs [][]byte, bpp int, crcs []uint32) {
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
			crcs[j] = Page(bufs[j*bpp : (j+1)*bpp])
			j++
		}
	}
	for ; j < n; j++ {
		crcs[j] = Page(bufs[j*bpp : (j+1)*bpp])
	}
}

// Page returns the CRC32C of the page made of bufs.
func Page(bufs [][]byte) uint32 {
	crc := uint32(0)
	for _, b := range bufs {
		crc = crc32.Update(crc, castagnoli, b)
	}
	return crc
}

// crc3Max is the largest buffer crc32cPages checksums (pages_amd64.s says
// it as a literal): from 504 bytes hash/crc32 runs three chains within
// the buffer, and past a few KiB three pages at once no longer gain.
const crc3Max = 4096
