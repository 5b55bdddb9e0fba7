/* Portable reference row functions: the specification every other path is checked against.
 *
 * quantize_row_<type>(x, y, n, qw): one row of n floats into n / blck blocks. qw is NULL or
 * n importance weights; for each type it selects the same algorithm ggml_quantize_chunk would
 * (for most types NULL means ggml's quantize_row_<type>_ref, non-NULL the weighted search).
 * dequantize_row_<type>(x, y, n): n elements out.
 */
#ifndef QTK_REF_H
#define QTK_REF_H

#include <stdint.h>

typedef void (*qtk_quantize_row_fn)(const float *x, void *y, int64_t n, const float *qw);
typedef void (*qtk_dequantize_row_fn)(const void *x, float *y, int64_t n);

#define QTK_DECLARE_ROW_FNS(name)                                                       \
    void qtk_quantize_row_##name(const float *x, void *y, int64_t n, const float *qw); \
    void qtk_dequantize_row_##name(const void *x, float *y, int64_t n);

QTK_DECLARE_ROW_FNS(f32)
QTK_DECLARE_ROW_FNS(f16)
QTK_DECLARE_ROW_FNS(bf16)
QTK_DECLARE_ROW_FNS(q4_0)
QTK_DECLARE_ROW_FNS(q4_1)
QTK_DECLARE_ROW_FNS(q5_0)
QTK_DECLARE_ROW_FNS(q5_1)
QTK_DECLARE_ROW_FNS(q8_0)
QTK_DECLARE_ROW_FNS(q8_1)
QTK_DECLARE_ROW_FNS(q2_K)
QTK_DECLARE_ROW_FNS(q3_K)
QTK_DECLARE_ROW_FNS(q4_K)
QTK_DECLARE_ROW_FNS(q5_K)
QTK_DECLARE_ROW_FNS(q6_K)
QTK_DECLARE_ROW_FNS(q8_K)
QTK_DECLARE_ROW_FNS(iq4_nl)
QTK_DECLARE_ROW_FNS(iq4_xs)
QTK_DECLARE_ROW_FNS(tq1_0)
QTK_DECLARE_ROW_FNS(tq2_0)
QTK_DECLARE_ROW_FNS(iq2_xxs)
QTK_DECLARE_ROW_FNS(iq2_xs)
QTK_DECLARE_ROW_FNS(iq2_s)
QTK_DECLARE_ROW_FNS(iq3_xxs)
QTK_DECLARE_ROW_FNS(iq3_s)
QTK_DECLARE_ROW_FNS(iq1_s)
QTK_DECLARE_ROW_FNS(iq1_m)

/* IQ1_M keeps its fp16 scale in four nibbles: the assembled value (ref_iq1.c). */
uint16_t qtk_iq1_m_scale(const void *block);

/* Reference dot products of the IQ types with a Q8_K activation row (dot_iq_ref.c):
 * s[0] = dot(x, y) over n elements. */
#define QTK_DECLARE_IQ_DOT(name) void qtk_vec_dot_##name##_q8_K_ref(int64_t n, float *s, const void *x, const void *y);
QTK_DECLARE_IQ_DOT(iq2_xxs)
QTK_DECLARE_IQ_DOT(iq2_xs)
QTK_DECLARE_IQ_DOT(iq2_s)
QTK_DECLARE_IQ_DOT(iq3_xxs)
QTK_DECLARE_IQ_DOT(iq3_s)
QTK_DECLARE_IQ_DOT(iq1_s)
QTK_DECLARE_IQ_DOT(iq1_m)

/* Shared checks (checks.c). */
int qtk_has_nonfinite(const float *x, int64_t n);          /* any NaN/Inf in x[0..n) */
int qtk_check_imatrix(const float *w, int64_t n);          /* QTK_OK or QTK_E_IMATRIX; NULL is fine */
int qtk_halves_overflow(const void *p, int64_t count);     /* any Inf/NaN among count fp16 values */

#endif
