/* Fast quantizers: the tables of fast row functions (the choice between them is isa.c's).
 *
 * A fast row function gives exactly the bytes of the reference row function of its type
 * (ref_*.c, the specification) and also watches for bad input and output on the way:
 *
 *   int fn(x, y, n, qw): quantize one row; return 0 when the row was finite and no stored fp16
 *   (or, for F16/BF16, no value) overflowed. A nonzero return means "maybe bad": the row may hold
 *   a NaN/Inf (then y is unspecified), or y is complete and a stored half may be infinite; the
 *   caller then runs the reference checks to tell which (qtk_quantize, quant.c).
 *
 * Variants: "vec" is the lane code of fastq_*.inc compiled at the baseline ISA (SSE2 on x86-64,
 * NEON on arm64); "avx2" is the same source inside an AVX2/FMA/F16C target region (x86-64 only),
 * plus F16C conversions. The reference row functions are the variant "ref".
 */
#ifndef QTK_FASTQ_H
#define QTK_FASTQ_H

#include <stdint.h>

#include "qtk.h"
#include "qtk_fastq.h"

typedef int (*qtk_fast_row_fn)(const float *x, void *y, int64_t n, const float *qw);

typedef struct {
    const char *name;
    qtk_fast_row_fn row[QTK_TYPE_COUNT];   /* NULL: the type runs its reference row function */
} qtk_fastq_table;

extern const qtk_fastq_table qtk_fastq_table_vec;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define QTK_FASTQ_HAVE_AVX2 1
extern const qtk_fastq_table qtk_fastq_table_avx2;
#endif

#endif
