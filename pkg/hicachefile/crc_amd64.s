#include "textflag.h"

// func crc32cTriple(crcA, crcB, crcC uint32, a, b, c *byte, words int) (retA, retB, retC uint32)
//
// Three independent CRC32C chains, one CRC32Q each per step: the
// instruction's latency is hidden by the other two chains.
TEXT ·crc32cTriple(SB), NOSPLIT, $0-60
	MOVL crcA+0(FP), AX
	MOVL crcB+4(FP), BX
	MOVL crcC+8(FP), DX
	MOVQ a+16(FP), R8
	MOVQ b+24(FP), R9
	MOVQ c+32(FP), R10
	MOVQ words+40(FP), CX
	TESTQ CX, CX
	JZ done

loop:
	CRC32Q (R8), AX
	CRC32Q (R9), BX
	CRC32Q (R10), DX
	ADDQ $8, R8
	ADDQ $8, R9
	ADDQ $8, R10
	DECQ CX
	JNZ loop

done:
	MOVL AX, retA+48(FP)
	MOVL BX, retB+52(FP)
	MOVL DX, retC+56(FP)
	RET
