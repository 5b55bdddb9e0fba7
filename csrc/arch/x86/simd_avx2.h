/* The AVX2 quantize / dequantize kernels (avx2_quant.c) that the AVX2 table (avx2_dot.c) uses.
 * Every one gives exactly the bits of its reference counterpart in ref_*.c / dot_ref.c.
 * Also the tables this folder offers the dispatcher (isa.c). Declarations only: safe to include
 * outside a target region. */
#ifndef QTK_SIMD_AVX2_H
#define QTK_SIMD_AVX2_H

#include <stdint.h>

#include "ref/iq_search.h"
#include "ref/kernels.h"

/* The AVX2 kernel table (avx2_dot.c). */
extern const qtk_kernels qtk_kernels_avx2;

/* The IQ quantizers' searches in AVX2 lanes (avx2_iq_search.c), the same bytes as qtk_iq_ops_lanes. */
extern const qtk_iq_ops qtk_iq_ops_avx2;

#define QTK_DECLARE_AVX2(name)                                                                  \
    void qtk_dequantize_row_##name##_avx2(const void *x, float *y, int64_t n);

QTK_DECLARE_AVX2(f16)
QTK_DECLARE_AVX2(bf16)
QTK_DECLARE_AVX2(q4_0)
QTK_DECLARE_AVX2(q4_1)
QTK_DECLARE_AVX2(q5_0)
QTK_DECLARE_AVX2(q5_1)
QTK_DECLARE_AVX2(q8_0)
QTK_DECLARE_AVX2(q8_1)
QTK_DECLARE_AVX2(q2_K)
QTK_DECLARE_AVX2(q3_K)
QTK_DECLARE_AVX2(q4_K)
QTK_DECLARE_AVX2(q5_K)
QTK_DECLARE_AVX2(q6_K)
QTK_DECLARE_AVX2(q8_K)
QTK_DECLARE_AVX2(iq4_nl)
QTK_DECLARE_AVX2(iq4_xs)
QTK_DECLARE_AVX2(tq1_0)
QTK_DECLARE_AVX2(tq2_0)

void qtk_quantize_row_q8_0_avx2(const float *x, void *y, int64_t n, const float *qw);
void qtk_quantize_row_q8_1_avx2(const float *x, void *y, int64_t n, const float *qw);
void qtk_quantize_row_q8_K_avx2(const float *x, void *y, int64_t n, const float *qw);
void qtk_quantize_row_f16_avx2(const float *x, void *y, int64_t n, const float *qw);
void qtk_quantize_row_bf16_avx2(const float *x, void *y, int64_t n, const float *qw);
void qtk_quantize_act_q8_0_avx2(const float *x, void *y, int64_t n);
void qtk_quantize_act_q8_1_avx2(const float *x, void *y, int64_t n);
void qtk_quantize_row_q8g_avx2(const float *x, void *y, int64_t n, int group);
void qtk_dequantize_custom_avx2(const qtk_custom_params *p, const void *x, float *y, int64_t n);

/* four-token gemm kernels (avx2_gemm.c) */
void qtk_vec_dot4_q4_0_q8_0_avx2(int64_t n, float *s, const void *x, const void *const *y);
void qtk_vec_dot4_q8_0_q8_0_avx2(int64_t n, float *s, const void *x, const void *const *y);
void qtk_vec_dot4_q4_1_q8_1_avx2(int64_t n, float *s, const void *x, const void *const *y);
void qtk_vec_dot4_q5_0_q8_0_avx2(int64_t n, float *s, const void *x, const void *const *y);
void qtk_vec_dot4_q5_1_q8_1_avx2(int64_t n, float *s, const void *x, const void *const *y);
void qtk_vec_dot4_iq4_nl_q8_0_avx2(int64_t n, float *s, const void *x, const void *const *y);

/* the float types as register tiles (avx2_float.c); _tile1 is the 1 x 1 tile, the single-row kernel;
 * bf16_f32: BF16 weights with F32 activations (QTK_ACT_F32) */
#define QTK_DECLARE_FLOAT_AVX2(name)                                                                     \
    void qtk_vec_dot_tile_##name##_avx2(int64_t n, float *s, int64_t ss, const void *x, int64_t xs,       \
                                        const void *const *y, int nr, int nt);                           \
    void qtk_vec_dot_##name##_tile1_avx2(int64_t n, float *s, const void *x, const void *y);
QTK_DECLARE_FLOAT_AVX2(f32)
QTK_DECLARE_FLOAT_AVX2(f16)
QTK_DECLARE_FLOAT_AVX2(bf16)
QTK_DECLARE_FLOAT_AVX2(bf16_f32)

/* the K-quants with Q8_K activations and IQ4_XS (avx2_kquants.c): single row and eight tokens */
#define QTK_DECLARE_KQ_AVX2(name)                                                                        \
    void qtk_vec_dot_##name##_q8_K_avx2(int64_t n, float *s, const void *x, const void *y);              \
    void qtk_vec_dot8_##name##_q8_K_avx2(int64_t n, float *s, const void *x, const qtk_q8k_group *g);       \
    void qtk_unpack_##name##_avx2(const void *x, int64_t n, uint8_t *u);                                 \
    void qtk_vec_dot8u_##name##_q8_K_avx2(int64_t n, float *s, const void *u, const qtk_q8k_group *g);
QTK_DECLARE_KQ_AVX2(q2_K)
QTK_DECLARE_KQ_AVX2(q3_K)
QTK_DECLARE_KQ_AVX2(q4_K)
QTK_DECLARE_KQ_AVX2(q5_K)
QTK_DECLARE_KQ_AVX2(q6_K)
QTK_DECLARE_KQ_AVX2(iq4_xs)

/* the codebook types (avx2_iq.c) */
#define QTK_DECLARE_IQ_AVX2(name)                                                                        \
    void qtk_dequantize_row_##name##_avx2(const void *x, float *y, int64_t n);                           \
    void qtk_vec_dot_##name##_q8_K_avx2(int64_t n, float *s, const void *x, const void *y);              \
    void qtk_unpack_##name##_avx2(const void *x, int64_t n, uint8_t *u);                                 \
    void qtk_vec_dot8u_##name##_q8_K_avx2(int64_t n, float *s, const void *u, const qtk_q8k_group *g);
QTK_DECLARE_IQ_AVX2(iq2_xxs)
QTK_DECLARE_IQ_AVX2(iq2_xs)
QTK_DECLARE_IQ_AVX2(iq2_s)
QTK_DECLARE_IQ_AVX2(iq3_xxs)
QTK_DECLARE_IQ_AVX2(iq3_s)
QTK_DECLARE_IQ_AVX2(iq1_s)
QTK_DECLARE_IQ_AVX2(iq1_m)

int qtk_has_nonfinite_avx2(const float *x, int64_t n);

/* CustomQuant levels of one group (n a multiple of 8) from its LSB-first bit stream into L. */
void qtk_custom_unpack_avx2(const uint8_t *in, int n, int bits, uint8_t *L);

#endif
