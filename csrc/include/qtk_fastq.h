/* qtoolkit C core: choice of the quantizer variant (isa.c, with the instruction set: qtk_isa.h).
 *
 * Every variant writes the same bytes; they differ only in speed. The best one the CPU runs is
 * chosen once, at the first call that needs it. The environment variable QTK_ISA caps the choice (it
 * can lower it, never raise it; isa.c owns it): "ref" = the portable reference row functions;
 * "baseline" (or "scalar", "vec") = the lane code at the baseline ISA (SSE2 / NEON); "avx2" (or
 * "neon") = no cap below the best. qtk_set_isa moves the quantizers along with the kernels;
 * qtk_fastq_set_variant forces a variant (for tests), within the same cap.
 */
#ifndef QTK_FASTQ_PUBLIC_H
#define QTK_FASTQ_PUBLIC_H

/* cdef-begin */
enum {
    QTK_FASTQ_REF = 0,
    QTK_FASTQ_VEC = 1,
    QTK_FASTQ_AVX2 = 2,
    QTK_FASTQ_COUNT = 3
};

/* "ref", "vec", "avx2"; NULL for an unknown id. */
const char *qtk_fastq_name(int variant);
/* 1 when this build has the variant and the CPU runs it (QTK_ISA not considered). */
int qtk_fastq_supported(int variant);
/* 1 when supported and not above the QTK_ISA cap. */
int qtk_fastq_available(int variant);
int qtk_fastq_variant(void);
/* QTK_OK, QTK_E_ARG for an unknown id, QTK_E_UNSUPPORTED when not available. */
int qtk_fastq_set_variant(int variant);
/* cdef-end */

#endif
