/* qtoolkit C core: the instruction set it runs on, for quantize and matmul alike.
 *
 * The best instruction set this build and CPU support is found once, at the first call that needs
 * it (cpuid + xgetbv on x86-64; NEON is part of every arm64 CPU). The environment variable QTK_ISA
 * (read once) caps the choice: it can lower it, never raise it. The ISA selects the matmul kernels
 * (qtk_matmul.h) and the quantizer variant (qtk_fastq.h): every choice writes the same quantized
 * bytes, and the SIMD kernels are held to a normalised error bound against the reference.
 *
 * Same rules as qtk.h: status codes, no printing, safe to call from any thread at any time.
 */
#ifndef QTK_ISA_H
#define QTK_ISA_H

/* cdef-begin */
/* Instruction sets, lowest first. */
enum {
    QTK_ISA_REF = 0,    /* portable C, the reference */
    QTK_ISA_AVX2 = 1,   /* x86-64 AVX2 + FMA + F16C */
    QTK_ISA_NEON = 2,   /* arm64 NEON (base armv8-a) */
    QTK_ISA_COUNT = 3
};

/* Name of an ISA id ("ref", "avx2", "neon"), or NULL for an unknown id. */
const char *qtk_isa_name(int isa);
/* 1 when this build and CPU can run the ISA and QTK_ISA (read once) does not cap it lower. */
int qtk_isa_available(int isa);
/* 1 when this build and CPU could run the ISA, ignoring QTK_ISA. */
int qtk_isa_supported(int isa);
/* The ISA whose kernels run now. */
int qtk_active_isa(void);
/* Switch kernels: QTK_E_ARG for an unknown id, QTK_E_UNSUPPORTED for one not available. Safe at
 * any time; a call already running finishes with the kernels it started with. */
int qtk_set_isa(int isa);
/* cdef-end */

#endif
