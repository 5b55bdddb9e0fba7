/* Helpers shared by the NEON files (neon_dot.c, neon_quant.c) and the quantize / dequantize
 * kernels the NEON table uses. Include only on aarch64. */
#ifndef QTK_SIMD_NEON_H
#define QTK_SIMD_NEON_H

#include <arm_neon.h>
#include <string.h>

#include "ref/common.h"
#include "ref/kernels.h"

/* The NEON kernel table (neon_dot.c), for the dispatcher (isa.c). */
extern const qtk_kernels qtk_kernels_neon;

static inline float h2f(qtk_half h) {
    return qtk_fp16_to_fp32(h);
}

/* acc + sum over pairs of a[i] * b[i] (16 int8 each); |a * b| pairs must fit int16 */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b));
    return vpadalq_s16(acc, p);
}

static inline int dot16i(int8x16_t a, int8x16_t b) {
    return vaddvq_s32(dot16(vdupq_n_s32(0), a, b));
}

static inline int8x16_t lo_nib(uint8x16_t q) {
    return vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F)));
}

static inline int8x16_t hi_nib(uint8x16_t q) {
    return vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
}

/* 0x10 in byte j where bit j (j = 0..15) of the 16-bit value is set */
static inline uint8x16_t bit16_to_0x10(uint32_t bits) {
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
    return vandq_u8(vtstq_u8(v, vld1q_u8(sel)), vdupq_n_u8(0x10));
}

static inline uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline float32x4_t ld_f16x4(const qtk_half *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

static inline float32x4_t ld_bf16x4(const uint16_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

/* the float tail of a Q8_0 / Q8_1 activation row (see kernels.h) */
#define YD(y, nb, i) qtk_ld_f32((const uint8_t *)((y) + (nb)) + 4 * (i))
#define YS(y, nb, i) qtk_ld_f32((const uint8_t *)((y) + (nb)) + 4 * ((nb) + (i)))

static inline void q3_K_scales_neon(const uint8_t *s, int8_t out[16]) {
    const uint32_t a0 = rd32(s), a1 = rd32(s + 4), t = rd32(s + 8);
    uint32_t u[4];
    u[0] = (a0 & 0x0F0F0F0Fu) | ((t & 0x03030303u) << 4);
    u[1] = (a1 & 0x0F0F0F0Fu) | (((t >> 2) & 0x03030303u) << 4);
    u[2] = ((a0 >> 4) & 0x0F0F0F0Fu) | (((t >> 4) & 0x03030303u) << 4);
    u[3] = ((a1 >> 4) & 0x0F0F0F0Fu) | (((t >> 6) & 0x03030303u) << 4);
    vst1q_s8(out, vsubq_s8(vreinterpretq_s8_u32(vld1q_u32(u)), vdupq_n_s8(32)));
}

static inline void k4_scales_neon(const uint8_t *q, uint8_t sc[8], uint8_t mn[8]) {
    const uint32_t a = rd32(q), b = rd32(q + 4), c = rd32(q + 8);
    const uint32_t u[4] = {a & 0x3F3F3F3Fu, (c & 0x0F0F0F0Fu) | (((a >> 6) & 0x03030303u) << 4), b & 0x3F3F3F3Fu,
                           ((c >> 4) & 0x0F0F0F0Fu) | (((b >> 6) & 0x03030303u) << 4)};
    memcpy(sc, u, 8);
    memcpy(mn, u + 2, 8);
}

/* The 32 signed Q6_K levels of quarter k (elements 128h + 32k + 0..31) as two vectors. */
static inline void q6_K_levels(const block_q6_K *b, int h, int k, int8x16_t *l0, int8x16_t *l1) {
    const uint8_t *ql = b->ql + 64 * h + 32 * (k & 1);
    const uint8_t *qh = b->qh + 32 * h;
    uint8x16_t a0 = vld1q_u8(ql), a1 = vld1q_u8(ql + 16);
    if (k >= 2) {
        a0 = vshrq_n_u8(a0, 4);
        a1 = vshrq_n_u8(a1, 4);
    } else {
        a0 = vandq_u8(a0, vdupq_n_u8(0x0F));
        a1 = vandq_u8(a1, vdupq_n_u8(0x0F));
    }
    const int8x16_t hs = vdupq_n_s8((int8_t)(4 - 2 * k));   /* bits 2k, 2k+1 -> bits 4, 5 */
    const uint8x16_t h0 = vandq_u8(vshlq_u8(vld1q_u8(qh), hs), vdupq_n_u8(0x30));
    const uint8x16_t h1 = vandq_u8(vshlq_u8(vld1q_u8(qh + 16), hs), vdupq_n_u8(0x30));
    *l0 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(a0, h0)), vdupq_n_s8(32));
    *l1 = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(a1, h1)), vdupq_n_s8(32));
}

/* trit k of each byte, minus one: ((uint8)(b * 3^k) * 3 >> 8) - 1 */
static inline int8x16_t trits16(uint8x16_t b, uint8_t pow3) {
    const uint8x16_t q = vmulq_u8(b, vdupq_n_u8(pow3));
    const uint8x8_t lo = vshrn_n_u16(vmull_u8(vget_low_u8(q), vdup_n_u8(3)), 8);
    const uint8x8_t hi = vshrn_n_u16(vmull_u8(vget_high_u8(q), vdup_n_u8(3)), 8);
    return vsubq_s8(vreinterpretq_s8_u8(vcombine_u8(lo, hi)), vdupq_n_s8(1));
}

/* neon_quant.c */
void qtk_quantize_row_q8_0_neon(const float *x, void *vy, int64_t n, const float *qw);
void qtk_quantize_row_q8_1_neon(const float *x, void *vy, int64_t n, const float *qw);
void qtk_quantize_act_q8_0_neon(const float *x, void *y, int64_t n);
void qtk_quantize_act_q8_1_neon(const float *x, void *y, int64_t n);
void qtk_quantize_row_q8_K_neon(const float *x, void *vy, int64_t n, const float *qw);
void qtk_dequantize_row_q4_0_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q4_1_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q5_0_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q5_1_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q8_0_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_iq4_nl_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q4_K_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q6_K_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_f16_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_bf16_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q8_1_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q8_K_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q2_K_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q3_K_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_q5_K_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_iq4_xs_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_tq2_0_neon(const void *vx, float *y, int64_t n);
void qtk_dequantize_row_tq1_0_neon(const void *vx, float *y, int64_t n);

/* neon_iq.c */
void qtk_vec_dot_iq2_xxs_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy);
void qtk_vec_dot_iq2_xs_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy);
void qtk_vec_dot_iq2_s_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy);
void qtk_vec_dot_iq3_xxs_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy);
void qtk_vec_dot_iq3_s_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy);
void qtk_vec_dot_iq1_s_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy);
void qtk_vec_dot_iq1_m_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy);

#endif
