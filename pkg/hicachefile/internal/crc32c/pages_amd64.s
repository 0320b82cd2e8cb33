//go:build amd64 && !purego

#include "textflag.h"

// func crc32cPages(crcs *uint32, bufs *[]byte, bpp int, groups int) (done int)
//
// For each group of three pages, the bpp slice headers of each page back
// to back from bufs, it checksums the three pages in three independent
// CRC32C chains, one CRC32Q each per step, so that the instruction's
// latency is hidden by the other two chains, and stores the three CRCs
// (inverted, as hash/crc32 returns them) at crcs. It stops before the
// first group in which the three pages' k-th buffers differ in length,
// have a length that is not a multiple of 8, or are longer than
// crc3Max, and returns how many groups it did.
TEXT ·crc32cPages(SB), NOSPLIT, $0-40
	MOVQ crcs+0(FP), DI
	MOVQ bufs+8(FP), SI
	MOVQ bpp+16(FP), R13
	IMULQ $24, R13            // bytes of one page's slice headers
	MOVQ groups+24(FP), R12   // groups left
	TESTQ R12, R12
	JZ done

group:
	MOVL $0xffffffff, AX
	MOVL $0xffffffff, BX
	MOVL $0xffffffff, DX
	MOVQ SI, R15              // page A's k-th header
	LEAQ (SI)(R13*1), R14     // end of page A's headers

buffer:
	MOVQ 8(R15), CX           // len of page A's buffer
	CMPQ CX, 8(R15)(R13*1)
	JNE done
	CMPQ CX, 8(R15)(R13*2)
	JNE done
	TESTQ $7, CX
	JNZ done
	CMPQ CX, $4096
	JA done
	MOVQ (R15), R8
	MOVQ (R15)(R13*1), R9
	MOVQ (R15)(R13*2), R10
	SHRQ $3, CX
	JZ next

words:
	CRC32Q (R8), AX
	CRC32Q (R9), BX
	CRC32Q (R10), DX
	ADDQ $8, R8
	ADDQ $8, R9
	ADDQ $8, R10
	DECQ CX
	JNZ words

next:
	ADDQ $24, R15
	CMPQ R15, R14
	JB buffer

	NOTL AX
	NOTL BX
	NOTL DX
	MOVL AX, (DI)
	MOVL BX, 4(DI)
	MOVL DX, 8(DI)
	ADDQ $12, DI
	LEAQ (SI)(R13*2), SI
	ADDQ R13, SI              // the next group's first page
	DECQ R12
	JNZ group

done:
	MOVQ groups+24(FP), AX
	SUBQ R12, AX
	MOVQ AX, done+32(FP)
	RET
