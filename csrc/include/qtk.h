/* qtoolkit C core: the public API.
 *
 * Every function returns a status code (QTK_OK on success) and writes through buffers owned
 * by the caller. Nothing here prints, aborts, allocates behind the caller's back for longer
 * than one call, or keeps static scratch: all functions are reentrant and may be called from
 * many threads at once (the Python binding releases the GIL around them).
 *
 * cffi reads the declarations between the cdef-begin / cdef-end markers (qtoolkit/_build.py), so
 * they must stay plain C without macros.
 */
#ifndef QTK_H
#define QTK_H

#include <stddef.h>
#include <stdint.h>

/* cdef-begin */
/* Status codes. */
enum {
    QTK_OK = 0,
    QTK_E_ARG = 1,            /* a null pointer, a negative count */
    QTK_E_TYPE = 2,           /* unknown or unsupported type id */
    QTK_E_SHAPE = 3,          /* row length not a multiple of the block size */
    QTK_E_NONFINITE = 4,      /* NaN or Inf in the input */
    QTK_E_NOMEM = 5,          /* a scratch allocation failed */
    QTK_E_IMATRIX = 6,        /* importance weights missing, negative or non-finite */
    QTK_E_UNSUPPORTED = 7,    /* a valid request this build cannot serve */
    QTK_E_OVERFLOW = 8        /* a value or scale does not fit the format's fp16/bf16 fields */
};

/* Type ids: the GGUF / ggml ids. */
enum {
    QTK_TYPE_F32 = 0,
    QTK_TYPE_F16 = 1,
    QTK_TYPE_Q4_0 = 2,
    QTK_TYPE_Q4_1 = 3,
    QTK_TYPE_Q5_0 = 6,
    QTK_TYPE_Q5_1 = 7,
    QTK_TYPE_Q8_0 = 8,
    QTK_TYPE_Q8_1 = 9,
    QTK_TYPE_Q2_K = 10,
    QTK_TYPE_Q3_K = 11,
    QTK_TYPE_Q4_K = 12,
    QTK_TYPE_Q5_K = 13,
    QTK_TYPE_Q6_K = 14,
    QTK_TYPE_Q8_K = 15,
    QTK_TYPE_IQ2_XXS = 16,
    QTK_TYPE_IQ2_XS = 17,
    QTK_TYPE_IQ3_XXS = 18,
    QTK_TYPE_IQ1_S = 19,
    QTK_TYPE_IQ4_NL = 20,
    QTK_TYPE_IQ3_S = 21,
    QTK_TYPE_IQ2_S = 22,
    QTK_TYPE_IQ4_XS = 23,
    QTK_TYPE_I8 = 24,
    QTK_TYPE_I16 = 25,
    QTK_TYPE_I32 = 26,
    QTK_TYPE_I64 = 27,
    QTK_TYPE_F64 = 28,
    QTK_TYPE_IQ1_M = 29,
    QTK_TYPE_BF16 = 30,
    QTK_TYPE_TQ1_0 = 34,
    QTK_TYPE_TQ2_0 = 35,
    QTK_TYPE_MXFP4 = 39,
    QTK_TYPE_COUNT = 43       /* one past the largest id the traits table covers */
};

typedef struct {
    const char *name;         /* ggml's spelling, e.g. "q4_K" */
    int64_t blck_size;        /* elements per block */
    int64_t type_size;        /* bytes per block */
    int is_quantized;
    int uses_imatrix;         /* the quantizer takes importance weights into account */
    int can_quantize;         /* this build implements quantize for the type */
    int can_dequantize;       /* ... and dequantize */
    int can_matmul;           /* qtk_matmul runs weights of the type (the reference has its dot kernel) */
} qtk_type_traits;

const char *qtk_version(void);
const char *qtk_strerror(int status);

/* Traits of a type id; QTK_E_TYPE for ids that are not ggml types (or were removed). Known types
 * this build cannot (de)quantize are listed with can_quantize / can_dequantize = 0. */
int qtk_get_type_traits(int type, qtk_type_traits *out);

/* Quantize nrows rows of n_per_row floats into dst (nrows * row_size bytes).
 * imatrix: NULL, or n_per_row non-negative finite weights (one per column), used by the
 * types that use them exactly as ggml_quantize_chunk would. On QTK_E_NONFINITE, *bad_row (if not
 * NULL) receives the index of the first row holding a NaN or Inf; on QTK_E_OVERFLOW, the first row
 * whose stored scale (or, for F16/BF16, value) overflowed to infinity, or, for the IQ codebook types
 * (IQ1_*, IQ2_*, IQ3_*), holding a magnitude of 2^60 or more. IQ2_XXS, IQ2_XS and IQ1_S return
 * QTK_E_IMATRIX when imatrix is NULL. */
int qtk_quantize(int type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                 const float *imatrix, int64_t *bad_row);

/* Dequantize nrows rows of n_per_row elements. */
int qtk_dequantize(int type, const void *src, float *dst, int64_t nrows, int64_t n_per_row);

/* Quantization error per row, without keeping the quantized data: err[r] = sum_j w_j (x_j - y_j)^2
 * where y is row r quantized to `type` (with `imatrix` as qtk_quantize takes it) and dequantized
 * again, in double precision. weights: NULL (all 1) or n_per_row non-negative finite values. */
int qtk_quant_error(int type, const float *src, int64_t nrows, int64_t n_per_row, const float *imatrix,
                    const float *weights, double *err, int64_t *bad_row);

/* Custom bit-widths: `bits` in 2..8, `group` a positive multiple of 8, fp16 scale (and fp16 min
 * unless symmetric). Block = [d:f16][m:f16 if asymmetric][group*bits/8 bytes, LSB-first bits]. */
int qtk_custom_block_bytes(int bits, int group, int symmetric, int64_t *out);
int qtk_custom_quantize(int bits, int group, int symmetric, const float *src, void *dst,
                        int64_t nrows, int64_t n_per_row, const float *imatrix, int64_t *bad_row);
int qtk_custom_dequantize(int bits, int group, int symmetric, const void *src, float *dst,
                          int64_t nrows, int64_t n_per_row);
/* cdef-end */

#endif
