/* qtoolkit C core: the sub-3-bit codebook formats (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS, IQ3_S) beyond the generic quantize/dequantize calls of qtk.h: their importance-weight
 * requirement, their codebooks (for tests and tools), and reference dot products.
 *
 * Same rules as qtk.h: status codes, caller-owned buffers, reentrant.
 */
#ifndef QTK_IQ_H
#define QTK_IQ_H

#include <stdint.h>

/* cdef-begin */
/* *out = 1 when quantizing `type` needs importance weights (ggml's IQ2_XXS, IQ2_XS, IQ1_S: ggml
 * asserts on them; qtk_quantize returns QTK_E_IMATRIX without them), else 0. */
int qtk_type_requires_imatrix(int type, int *out);

/* The codebook of an IQ type, expanded: *entries grid points of *width values each, written in
 * element order to out (entries * width values; out may be NULL to ask for the size only). */
int qtk_iq_grid(int type, int16_t *out, int64_t capacity, int64_t *entries, int64_t *width);

/* The 128 sign patterns of IQ2_XXS / IQ2_XS / IQ3_XXS (bit j set: element j negative; bit 7 is
 * the even parity of bits 0..6). */
int qtk_iq_ksigns(uint8_t *out, int64_t capacity);

/* The IQ1_S / IQ1_M grid shift. */
int qtk_iq1_delta(float *out);

/* *out = dot(x, y) over n elements by the portable reference kernel: x one row of an IQ type,
 * y the activation row quantized to Q8_K (ggml's CPU pairing for every IQ type). */
int qtk_iq_vec_dot_ref(int type, int64_t n, const void *x, const void *y, float *out);
/* cdef-end */

#endif
