/* arm64 NEON kernels: dot products of every type, the Q8_0 / Q8_1 / Q8_K activation quantizers and
 * the dequantizers, plus the NEON kernel table. Compiled only on aarch64 (NEON is part of the base
 * architecture there, so no target region is needed); other builds see an empty file.
 *
 * Only base armv8-a instructions are used (no dotprod extension): int8 products are widened with
 * vmull_s8 / vmlal_s8 and pairwise-accumulated into int32. Levels are formed signed where the
 * format is signed, so no bsums correction is needed except for the K-quant mins.
 *
 * Quantizers and dequantizers give the reference's bits: the same float operations in the same
 * order, vcvtaq (round half away from zero) for roundf, the 1.5 * 2^23 addition for nearest_int,
 * and truncating narrows for the (int8_t) casts. Blocks holding a NaN go through the reference
 * code itself (what a NaN does to its maxima depends on how the compiler lowered them).
 */
#if defined(__aarch64__)

#include <arm_neon.h>

#include "common.h"
#include "kernels.h"

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

/* ---------------------------------------------------------------- float rows */

static void qtk_vec_dot_f32_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; ++i) {
        sum += x[i] * y[i];
    }
    *s = sum;
}

static inline float32x4_t ld_f16x4(const qtk_half *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

static void qtk_vec_dot_f16_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const qtk_half *x = vx;
    const float *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, ld_f16x4(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, ld_f16x4(x + i + 4), vld1q_f32(y + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; ++i) {
        sum += h2f(x[i]) * y[i];
    }
    *s = sum;
}

static inline float32x4_t ld_bf16x4(const uint16_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

static void qtk_vec_dot_bf16_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx, *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, ld_bf16x4(x + i), ld_bf16x4(y + i));
        a1 = vfmaq_f32(a1, ld_bf16x4(x + i + 4), ld_bf16x4(y + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; ++i) {
        sum += qtk_bf16_to_fp32(x[i]) * qtk_bf16_to_fp32(y[i]);
    }
    *s = sum;
}

/* ---------------------------------------------------------------- 32-element formats */

/* the float tail of a Q8_0 / Q8_1 activation row (see kernels.h) */
#define YD(y, nb, i) qtk_ld_f32((const uint8_t *)((y) + (nb)) + 4 * (i))
#define YS(y, nb, i) qtk_ld_f32((const uint8_t *)((y) + (nb)) + 4 * ((nb) + (i)))

static void qtk_vec_dot_q4_0_q8_0_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    const int8x16_t eight = vdupq_n_s8(8);
    const int64_t nb = n / QK4_0;
    for (int64_t i = 0; i < nb; ++i) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        int32x4_t p = dot16(vdupq_n_s32(0), vsubq_s8(lo_nib(q), eight), vld1q_s8(y[i].qs));
        p = dot16(p, vsubq_s8(hi_nib(q), eight), vld1q_s8(y[i].qs + 16));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[i].d) * YD(y, nb, i));
    }
    *s = vaddvq_f32(acc);
}

static void qtk_vec_dot_q4_1_q8_1_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    float summs = 0.0f;
    const int64_t nb = n / QK4_1;
    for (int64_t i = 0; i < nb; ++i) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        int32x4_t p = dot16(vdupq_n_s32(0), lo_nib(q), vld1q_s8(y[i].qs));
        p = dot16(p, hi_nib(q), vld1q_s8(y[i].qs + 16));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[i].d) * YD(y, nb, i));
        summs += h2f(x[i].m) * YS(y, nb, i);
    }
    *s = vaddvq_f32(acc) + summs;
}

static void qtk_vec_dot_q5_0_q8_0_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    const int8x16_t sixteen = vdupq_n_s8(16);
    const int64_t nb = n / QK5_0;
    for (int64_t i = 0; i < nb; ++i) {
        const uint32_t qh = rd32(x[i].qh);
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const int8x16_t lo = vsubq_s8(vorrq_s8(lo_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh))), sixteen);
        const int8x16_t hi = vsubq_s8(vorrq_s8(hi_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh >> 16))), sixteen);
        int32x4_t p = dot16(vdupq_n_s32(0), lo, vld1q_s8(y[i].qs));
        p = dot16(p, hi, vld1q_s8(y[i].qs + 16));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[i].d) * YD(y, nb, i));
    }
    *s = vaddvq_f32(acc);
}

static void qtk_vec_dot_q5_1_q8_1_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    float summs = 0.0f;
    const int64_t nb = n / QK5_1;
    for (int64_t i = 0; i < nb; ++i) {
        const uint32_t qh = rd32(x[i].qh);
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const int8x16_t lo = vorrq_s8(lo_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh)));
        const int8x16_t hi = vorrq_s8(hi_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh >> 16)));
        int32x4_t p = dot16(vdupq_n_s32(0), lo, vld1q_s8(y[i].qs));
        p = dot16(p, hi, vld1q_s8(y[i].qs + 16));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[i].d) * YD(y, nb, i));
        summs += h2f(x[i].m) * YS(y, nb, i);
    }
    *s = vaddvq_f32(acc) + summs;
}

static void qtk_vec_dot_q8_0_q8_0_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float32x4_t acc = vdupq_n_f32(0);
    const int64_t nb = n / QK8_0;
    for (int64_t i = 0; i < nb; ++i) {
        int32x4_t p = dot16(vdupq_n_s32(0), vld1q_s8(x[i].qs), vld1q_s8(y[i].qs));
        p = dot16(p, vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs + 16));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[i].d) * YD(y, nb, i));
    }
    *s = vaddvq_f32(acc);
}

static void qtk_vec_dot_iq4_nl_q8_0_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    const int8x16_t lut = vld1q_s8(qtk_kvalues_iq4nl);
    float32x4_t acc = vdupq_n_f32(0);
    const int64_t nb = n / QK4_NL;
    for (int64_t i = 0; i < nb; ++i) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const int8x16_t lo = vqtbl1q_s8(lut, vandq_u8(q, vdupq_n_u8(0x0F)));
        const int8x16_t hi = vqtbl1q_s8(lut, vshrq_n_u8(q, 4));
        int32x4_t p = dot16(vdupq_n_s32(0), lo, vld1q_s8(y[i].qs));
        p = dot16(p, hi, vld1q_s8(y[i].qs + 16));
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), h2f(x[i].d) * YD(y, nb, i));
    }
    *s = vaddvq_f32(acc);
}

/* ---------------------------------------------------------------- K-quants */

static void qtk_vec_dot_q2_K_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    const uint8x16_t m3 = vdupq_n_u8(3);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int sc_sum = 0, min_sum = 0;
        for (int j = 0; j < 16; ++j) {
            min_sum += (x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        for (int h = 0; h < 2; ++h) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * h), q1 = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int k = 0; k < 4; ++k) {
                const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * k));
                const int8x16_t l0 = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q0, shift), m3));
                const int8x16_t l1 = vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q1, shift), m3));
                const int j = 8 * h + 2 * k;
                const int8_t *q8 = y[i].qs + 128 * h + 32 * k;
                sc_sum += (x[i].scales[j] & 0xF) * dot16i(l0, vld1q_s8(q8));
                sc_sum += (x[i].scales[j + 1] & 0xF) * dot16i(l1, vld1q_s8(q8 + 16));
            }
        }
        sum += (y[i].d * h2f(x[i].d)) * (float)sc_sum - (y[i].d * h2f(x[i].dmin)) * (float)min_sum;
    }
    *s = sum;
}

static inline void q3_K_scales_neon(const uint8_t *s, int8_t out[16]) {
    const uint32_t a0 = rd32(s), a1 = rd32(s + 4), t = rd32(s + 8);
    uint32_t u[4];
    u[0] = (a0 & 0x0F0F0F0Fu) | ((t & 0x03030303u) << 4);
    u[1] = (a1 & 0x0F0F0F0Fu) | (((t >> 2) & 0x03030303u) << 4);
    u[2] = ((a0 >> 4) & 0x0F0F0F0Fu) | (((t >> 4) & 0x03030303u) << 4);
    u[3] = ((a1 >> 4) & 0x0F0F0F0Fu) | (((t >> 6) & 0x03030303u) << 4);
    vst1q_s8(out, vsubq_s8(vreinterpretq_s8_u32(vld1q_u32(u)), vdupq_n_s8(32)));
}

static void qtk_vec_dot_q3_K_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    const uint8x16_t m3 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int8_t sc[16];
        q3_K_scales_neon(x[i].scales, sc);
        const uint8x16_t hm0 = vld1q_u8(x[i].hmask), hm1 = vld1q_u8(x[i].hmask + 16);
        int total = 0;
        for (int h = 0; h < 2; ++h) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * h), q1 = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int k = 0; k < 4; ++k) {
                const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * k));
                const int8x16_t hs = vdupq_n_s8((int8_t)(-(4 * h + k)));
                /* level = low two bits - 4 when the high bit is clear */
                const uint8x16_t h0 = vandq_u8(vshlq_u8(hm0, hs), one), h1 = vandq_u8(vshlq_u8(hm1, hs), one);
                const int8x16_t l0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q0, shift), m3)),
                                              vreinterpretq_s8_u8(vshlq_n_u8(veorq_u8(h0, one), 2)));
                const int8x16_t l1 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q1, shift), m3)),
                                              vreinterpretq_s8_u8(vshlq_n_u8(veorq_u8(h1, one), 2)));
                const int j = 8 * h + 2 * k;
                const int8_t *q8 = y[i].qs + 128 * h + 32 * k;
                total += sc[j] * dot16i(l0, vld1q_s8(q8)) + sc[j + 1] * dot16i(l1, vld1q_s8(q8 + 16));
            }
        }
        sum += (y[i].d * h2f(x[i].d)) * (float)total;
    }
    *s = sum;
}

static inline void k4_scales_neon(const uint8_t *q, uint8_t sc[8], uint8_t mn[8]) {
    const uint32_t a = rd32(q), b = rd32(q + 4), c = rd32(q + 8);
    const uint32_t u[4] = {a & 0x3F3F3F3Fu, (c & 0x0F0F0F0Fu) | (((a >> 6) & 0x03030303u) << 4), b & 0x3F3F3F3Fu,
                           ((c >> 4) & 0x0F0F0F0Fu) | (((b >> 6) & 0x03030303u) << 4)};
    memcpy(sc, u, 8);
    memcpy(mn, u + 2, 8);
}

static float dot_q45_K_neon(float d, float dmin, const uint8_t *scales, const uint8_t *qs, const uint8_t *qh,
                            const block_q8_K *y) {
    uint8_t sc[8], mn[8];
    k4_scales_neon(scales, sc, mn);
    int sc_sum = 0, min_sum = 0;
    for (int j = 0; j < 8; ++j) {
        min_sum += mn[j] * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    }
    uint8x16_t h0 = vdupq_n_u8(0), h1 = h0;
    if (qh) {
        h0 = vld1q_u8(qh);
        h1 = vld1q_u8(qh + 16);
    }
    for (int c = 0; c < 4; ++c) {
        const uint8x16_t q0 = vld1q_u8(qs + 32 * c), q1 = vld1q_u8(qs + 32 * c + 16);
        for (int half = 0; half < 2; ++half) {
            const int j = 2 * c + half;
            int8x16_t l0 = half ? hi_nib(q0) : lo_nib(q0);
            int8x16_t l1 = half ? hi_nib(q1) : lo_nib(q1);
            if (qh) {
                const int8x16_t hs = vdupq_n_s8((int8_t)(4 - j));   /* bit j -> bit 4 */
                l0 = vorrq_s8(l0, vreinterpretq_s8_u8(vandq_u8(vshlq_u8(h0, hs), vdupq_n_u8(0x10))));
                l1 = vorrq_s8(l1, vreinterpretq_s8_u8(vandq_u8(vshlq_u8(h1, hs), vdupq_n_u8(0x10))));
            }
            int32x4_t p = dot16(vdupq_n_s32(0), l0, vld1q_s8(y->qs + 32 * j));
            p = dot16(p, l1, vld1q_s8(y->qs + 32 * j + 16));
            sc_sum += sc[j] * vaddvq_s32(p);
        }
    }
    return (y->d * d) * (float)sc_sum - (y->d * dmin) * (float)min_sum;
}

static void qtk_vec_dot_q4_K_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        sum += dot_q45_K_neon(h2f(x[i].d), h2f(x[i].dmin), x[i].scales, x[i].qs, NULL, &y[i]);
    }
    *s = sum;
}

static void qtk_vec_dot_q5_K_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        sum += dot_q45_K_neon(h2f(x[i].d), h2f(x[i].dmin), x[i].scales, x[i].qs, x[i].qh, &y[i]);
    }
    *s = sum;
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

static void qtk_vec_dot_q6_K_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int total = 0;
        for (int h = 0; h < 2; ++h) {
            for (int k = 0; k < 4; ++k) {
                int8x16_t l0, l1;
                q6_K_levels(&x[i], h, k, &l0, &l1);
                const int j = 8 * h + 2 * k;
                const int8_t *q8 = y[i].qs + 128 * h + 32 * k;
                total += x[i].scales[j] * dot16i(l0, vld1q_s8(q8)) + x[i].scales[j + 1] * dot16i(l1, vld1q_s8(q8 + 16));
            }
        }
        sum += (y[i].d * h2f(x[i].d)) * (float)total;
    }
    *s = sum;
}

static void qtk_vec_dot_iq4_xs_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    const int8x16_t lut = vld1q_s8(qtk_kvalues_iq4nl);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int total = 0;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            const uint8x16_t q = vld1q_u8(x[i].qs + 16 * ib);
            int32x4_t p = dot16(vdupq_n_s32(0), vqtbl1q_s8(lut, vandq_u8(q, vdupq_n_u8(0x0F))), vld1q_s8(y[i].qs + 32 * ib));
            p = dot16(p, vqtbl1q_s8(lut, vshrq_n_u8(q, 4)), vld1q_s8(y[i].qs + 32 * ib + 16));
            total += (ls - 32) * vaddvq_s32(p);
        }
        sum += (y[i].d * h2f(x[i].d)) * (float)total;
    }
    *s = sum;
}

static void qtk_vec_dot_tq2_0_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq2_0 *x = vx;
    const block_q8_K *y = vy;
    const uint8x16_t m3 = vdupq_n_u8(3);
    const int8x16_t one = vdupq_n_s8(1);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        int32x4_t acc = vdupq_n_s32(0);
        for (int c = 0; c < 2; ++c) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * c), q1 = vld1q_u8(x[i].qs + 32 * c + 16);
            for (int k = 0; k < 4; ++k) {
                const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * k));
                const int8x16_t l0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q0, shift), m3)), one);
                const int8x16_t l1 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q1, shift), m3)), one);
                const int8_t *q8 = y[i].qs + 128 * c + 32 * k;
                acc = dot16(dot16(acc, l0, vld1q_s8(q8)), l1, vld1q_s8(q8 + 16));
            }
        }
        sum += (y[i].d * h2f(x[i].d)) * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

/* trit k of each byte, minus one: ((uint8)(b * 3^k) * 3 >> 8) - 1 */
static inline int8x16_t trits16(uint8x16_t b, uint8_t pow3) {
    const uint8x16_t q = vmulq_u8(b, vdupq_n_u8(pow3));
    const uint8x8_t lo = vshrn_n_u16(vmull_u8(vget_low_u8(q), vdup_n_u8(3)), 8);
    const uint8x8_t hi = vshrn_n_u16(vmull_u8(vget_high_u8(q), vdup_n_u8(3)), 8);
    return vsubq_s8(vreinterpretq_s8_u8(vcombine_u8(lo, hi)), vdupq_n_s8(1));
}

static void qtk_vec_dot_tq1_0_q8_K_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq1_0 *x = vx;
    const block_q8_K *y = vy;
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        const uint8x16_t a0 = vld1q_u8(x[i].qs), a1 = vld1q_u8(x[i].qs + 16), b = vld1q_u8(x[i].qs + 32);
        int32x4_t acc = vdupq_n_s32(0);
        for (int k = 0; k < 5; ++k) {
            acc = dot16(acc, trits16(a0, pow3[k]), vld1q_s8(q8 + 32 * k));
            acc = dot16(acc, trits16(a1, pow3[k]), vld1q_s8(q8 + 32 * k + 16));
            acc = dot16(acc, trits16(b, pow3[k]), vld1q_s8(q8 + 160 + 16 * k));
        }
        /* qh: element 240 + 4k + j is trit k of qh[j] */
        uint32_t qh4;
        memcpy(&qh4, x[i].qh, 4);
        const uint8x16_t hv = vreinterpretq_u8_u32(vdupq_n_u32(qh4));
        static const uint8_t hp[16] = {1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27};
        const uint8x16_t q = vmulq_u8(hv, vld1q_u8(hp));
        const uint8x8_t lo = vshrn_n_u16(vmull_u8(vget_low_u8(q), vdup_n_u8(3)), 8);
        const uint8x8_t hi = vshrn_n_u16(vmull_u8(vget_high_u8(q), vdup_n_u8(3)), 8);
        const int8x16_t t = vsubq_s8(vreinterpretq_s8_u8(vcombine_u8(lo, hi)), vdupq_n_s8(1));
        acc = dot16(acc, t, vld1q_s8(q8 + 240));
        sum += (y[i].d * h2f(x[i].d)) * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

/* ---------------------------------------------------------------- CustomQuant with Q8G */

static void unpack_levels_neon(const uint8_t *in, int n, int bits, uint8_t *L) {
    const uint64_t mask = (1u << bits) - 1u;
    const int len = n * bits / 8;
    for (int c = 0; c < n / 8; ++c) {
        uint64_t w = 0;
        memcpy(&w, in + c * bits, c * bits + 8 <= len ? 8 : (size_t)bits);
        for (int j = 0; j < 8; ++j) {
            L[8 * c + j] = (uint8_t)((w >> (bits * j)) & mask);
        }
    }
}

static void qtk_vec_dot_custom_q8g_neon(const qtk_custom_params *p, int64_t n, float *s, const void *vx,
                                        const void *vy) {
    const uint8_t *x = vx, *y = vy;
    const int g = p->group, off = p->symmetric ? 2 : 4;
    uint8_t L[1024];
    float sum = 0.0f;
    for (int64_t b = 0; b < n / g; ++b, x += p->block_bytes, y += QTK_Q8G_BYTES(g)) {
        unpack_levels_neon(x + off, g, p->bits, L);
        const int8_t *qs = (const int8_t *)(y + 8);
        int32x4_t acc = vdupq_n_s32(0);
        for (int j = 0; j < g; j += 8) {
            const int16x8_t l16 = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(L + j)));
            const int16x8_t y16 = vmovl_s8(vld1_s8(qs + j));
            acc = vmlal_s16(acc, vget_low_s16(l16), vget_low_s16(y16));
            acc = vmlal_s16(acc, vget_high_s16(l16), vget_high_s16(y16));
        }
        const int32_t isum = vaddvq_s32(acc);
        int32_t ysum;
        float yd;
        memcpy(&yd, y, 4);
        memcpy(&ysum, y + 4, 4);
        qtk_half dh;
        memcpy(&dh, x, 2);
        const float d = h2f(dh);
        if (p->symmetric) {
            sum += (d * yd) * (float)(isum - (1 << (p->bits - 1)) * ysum);
        } else {
            qtk_half mh;
            memcpy(&mh, x + 2, 2);
            sum += (d * yd) * (float)isum + (h2f(mh) * yd) * (float)ysum;
        }
    }
    *s = sum;
}

/* ---------------------------------------------------------------- activation quantizers */

static inline int has_nan(const float *x, int n) {
    uint32x4_t bad = vdupq_n_u32(0);
    for (int j = 0; j < n; j += 4) {
        const float32x4_t v = vld1q_f32(x + j);
        bad = vorrq_u32(bad, vmvnq_u32(vceqq_f32(v, v)));
    }
    return vmaxvq_u32(bad) != 0;
}

/* One block of 32: the levels (truncated to int8 like the reference's cast) and d; returns the
 * sum of the stored levels. */
static inline int q8_block32_neon(const float *x, int8_t *qs, float *d_out) {
    float32x4_t v[8];
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int k = 0; k < 8; ++k) {
        v[k] = vld1q_f32(x + 4 * k);
        m = vmaxnmq_f32(m, vabsq_f32(v[k]));
    }
    const float d = vmaxnmvq_f32(m) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    int16x8_t w[4];
    for (int k = 0; k < 4; ++k) {
        const int32x4_t a = vcvtaq_s32_f32(vmulq_n_f32(v[2 * k], id));
        const int32x4_t b = vcvtaq_s32_f32(vmulq_n_f32(v[2 * k + 1], id));
        w[k] = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
    }
    const int8x16_t q0 = vcombine_s8(vmovn_s16(w[0]), vmovn_s16(w[1]));
    const int8x16_t q1 = vcombine_s8(vmovn_s16(w[2]), vmovn_s16(w[3]));
    vst1q_s8(qs, q0);
    vst1q_s8(qs + 16, q1);
    *d_out = d;
    return vaddlvq_s8(q0) + vaddlvq_s8(q1);
}

static void qtk_quantize_row_q8_0_neon(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        float d;
        if (has_nan(x + i * QK8_0, QK8_0)) {
            qtk_quantize_row_q8_0(x + i * QK8_0, &y[i], QK8_0, NULL);
            continue;
        }
        q8_block32_neon(x + i * QK8_0, y[i].qs, &d);
        y[i].d = qtk_fp32_to_fp16(d);
    }
}

static void qtk_quantize_row_q8_1_neon(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / QK8_1; ++i) {
        float d;
        if (has_nan(x + i * QK8_1, QK8_1)) {
            qtk_quantize_row_q8_1(x + i * QK8_1, &y[i], QK8_1, NULL);
            continue;
        }
        const int sum = q8_block32_neon(x + i * QK8_1, y[i].qs, &d);
        y[i].d = qtk_fp32_to_fp16(d);
        y[i].s = qtk_fp32_to_fp16(sum * d);
    }
}

static void qtk_quantize_act_q8_0_neon(const float *x, void *y, int64_t n) {
    qtk_quantize_row_q8_0_neon(x, y, n, NULL);
    qtk_extend_q8_0(y, n / QK8_0);
}

static void qtk_quantize_act_q8_1_neon(const float *x, void *y, int64_t n) {
    qtk_quantize_row_q8_1_neon(x, y, n, NULL);
    qtk_extend_q8_1(y, n / QK8_1);
}

static void qtk_quantize_row_q8_K_neon(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    block_q8_K *y = vy;
    const float32x4_t magic = vdupq_n_f32(12582912.0f);
    const int32x4_t mant = vdupq_n_s32(0x007fffff), bias = vdupq_n_s32(0x00400000), top = vdupq_n_s32(127);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        if (has_nan(x, QK_K)) {
            qtk_quantize_row_q8_K(x, &y[i], QK_K, NULL);
            continue;
        }
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int j = 0; j < QK_K; j += 4) {
            m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + j)));
        }
        const float amax = vmaxnmvq_f32(m);
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float max = 0.0f;
        for (int j = 0; j < QK_K; ++j) {
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j += 16) {
            int16x8_t w[2];
            for (int k = 0; k < 2; ++k) {
                int32x4_t r[2];
                for (int h = 0; h < 2; ++h) {
                    const float32x4_t v = vaddq_f32(vmulq_n_f32(vld1q_f32(x + j + 8 * k + 4 * h), iscale), magic);
                    r[h] = vminq_s32(vsubq_s32(vandq_s32(vreinterpretq_s32_f32(v), mant), bias), top);
                }
                w[k] = vcombine_s16(vmovn_s32(r[0]), vmovn_s32(r[1]));
            }
            const int8x16_t q = vcombine_s8(vmovn_s16(w[0]), vmovn_s16(w[1]));
            vst1q_s8(y[i].qs + j, q);
            y[i].bsums[j / 16] = (int16_t)vaddlvq_s8(q);
        }
        y[i].d = 1 / iscale;
    }
}

/* ---------------------------------------------------------------- dequantizers */

/* y[0..16) = d * levels, as float(level) * d */
static inline void st16_mul(int8x16_t q, float d, float *y) {
    const int16x8_t a = vmovl_s8(vget_low_s8(q)), b = vmovl_s8(vget_high_s8(q));
    vst1q_f32(y, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(a))), d));
    vst1q_f32(y + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(a))), d));
    vst1q_f32(y + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(b))), d));
    vst1q_f32(y + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(b))), d));
}

/* y = level * d + m */
static inline void st16_affine(int8x16_t q, float d, float m, float *y) {
    const int16x8_t a = vmovl_s8(vget_low_s8(q)), b = vmovl_s8(vget_high_s8(q));
    const float32x4_t vm = vdupq_n_f32(m);
    vst1q_f32(y, vaddq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(a))), d), vm));
    vst1q_f32(y + 4, vaddq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(a))), d), vm));
    vst1q_f32(y + 8, vaddq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(b))), d), vm));
    vst1q_f32(y + 12, vaddq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(b))), d), vm));
}

/* y = d * level - m */
static inline void st16_mul_sub(int8x16_t q, float d, float m, float *y) {
    const int16x8_t a = vmovl_s8(vget_low_s8(q)), b = vmovl_s8(vget_high_s8(q));
    const float32x4_t vm = vdupq_n_f32(m);
    vst1q_f32(y, vsubq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(a))), d), vm));
    vst1q_f32(y + 4, vsubq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(a))), d), vm));
    vst1q_f32(y + 8, vsubq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(b))), d), vm));
    vst1q_f32(y + 12, vsubq_f32(vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_high_s16(b))), d), vm));
}

static void qtk_dequantize_row_q4_0_neon(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; ++i, y += QK4_0) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const float d = h2f(x[i].d);
        st16_mul(vsubq_s8(lo_nib(q), vdupq_n_s8(8)), d, y);
        st16_mul(vsubq_s8(hi_nib(q), vdupq_n_s8(8)), d, y + 16);
    }
}

static void qtk_dequantize_row_q4_1_neon(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; ++i, y += QK4_1) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        st16_affine(lo_nib(q), h2f(x[i].d), h2f(x[i].m), y);
        st16_affine(hi_nib(q), h2f(x[i].d), h2f(x[i].m), y + 16);
    }
}

static void qtk_dequantize_row_q5_0_neon(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; ++i, y += QK5_0) {
        const uint32_t qh = rd32(x[i].qh);
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const float d = h2f(x[i].d);
        st16_mul(vsubq_s8(vorrq_s8(lo_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh))), vdupq_n_s8(16)), d, y);
        st16_mul(vsubq_s8(vorrq_s8(hi_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh >> 16))), vdupq_n_s8(16)), d, y + 16);
    }
}

static void qtk_dequantize_row_q5_1_neon(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; ++i, y += QK5_1) {
        const uint32_t qh = rd32(x[i].qh);
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        st16_affine(vorrq_s8(lo_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh))), d, m, y);
        st16_affine(vorrq_s8(hi_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh >> 16))), d, m, y + 16);
    }
}

static void qtk_dequantize_row_q8_0_neon(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; ++i, y += QK8_0) {
        st16_mul(vld1q_s8(x[i].qs), h2f(x[i].d), y);
        st16_mul(vld1q_s8(x[i].qs + 16), h2f(x[i].d), y + 16);
    }
}

static void qtk_dequantize_row_iq4_nl_neon(const void *vx, float *y, int64_t n) {
    const block_iq4_nl *x = vx;
    const int8x16_t lut = vld1q_s8(qtk_kvalues_iq4nl);
    for (int64_t i = 0; i < n / QK4_NL; ++i, y += QK4_NL) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        st16_mul(vqtbl1q_s8(lut, vandq_u8(q, vdupq_n_u8(0x0F))), h2f(x[i].d), y);
        st16_mul(vqtbl1q_s8(lut, vshrq_n_u8(q, 4)), h2f(x[i].d), y + 16);
    }
}

static void qtk_dequantize_row_q4_K_neon(const void *vx, float *y, int64_t n) {
    const block_q4_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        uint8_t sc[8], mn[8];
        k4_scales_neon(x[i].scales, sc, mn);
        for (int c = 0; c < 4; ++c) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * c), q1 = vld1q_u8(x[i].qs + 32 * c + 16);
            const float d1 = d * sc[2 * c], m1 = dmin * mn[2 * c], d2 = d * sc[2 * c + 1], m2 = dmin * mn[2 * c + 1];
            st16_mul_sub(lo_nib(q0), d1, m1, y + 64 * c);
            st16_mul_sub(lo_nib(q1), d1, m1, y + 64 * c + 16);
            st16_mul_sub(hi_nib(q0), d2, m2, y + 64 * c + 32);
            st16_mul_sub(hi_nib(q1), d2, m2, y + 64 * c + 48);
        }
    }
}

static void qtk_dequantize_row_q6_K_neon(const void *vx, float *y, int64_t n) {
    const block_q6_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = h2f(x[i].d);
        for (int h = 0; h < 2; ++h) {
            for (int k = 0; k < 4; ++k) {
                int8x16_t l0, l1;
                q6_K_levels(&x[i], h, k, &l0, &l1);
                const int j = 8 * h + 2 * k;
                st16_mul(l0, d * x[i].scales[j], y + 128 * h + 32 * k);
                st16_mul(l1, d * x[i].scales[j + 1], y + 128 * h + 32 * k + 16);
            }
        }
    }
}

static void qtk_dequantize_row_f16_neon(const void *vx, float *y, int64_t n) {
    const qtk_half *x = vx;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        vst1q_f32(y + i, ld_f16x4(x + i));
    }
    for (; i < n; ++i) {
        y[i] = h2f(x[i]);
    }
}

static void qtk_dequantize_row_bf16_neon(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        vst1q_f32(y + i, ld_bf16x4(x + i));
    }
    for (; i < n; ++i) {
        y[i] = qtk_bf16_to_fp32(x[i]);
    }
}

static void qtk_dequantize_row_q8_1_neon(const void *vx, float *y, int64_t n) {
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / QK8_1; ++i, y += QK8_1) {
        st16_mul(vld1q_s8(x[i].qs), h2f(x[i].d), y);
        st16_mul(vld1q_s8(x[i].qs + 16), h2f(x[i].d), y + 16);
    }
}

static void qtk_dequantize_row_q8_K_neon(const void *vx, float *y, int64_t n) {
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        for (int j = 0; j < QK_K; j += 16) {
            st16_mul(vld1q_s8(x[i].qs + j), x[i].d, y + j);
        }
    }
}

static void qtk_dequantize_row_q2_K_neon(const void *vx, float *y, int64_t n) {
    const block_q2_K *x = vx;
    const uint8x16_t m3 = vdupq_n_u8(3);
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        for (int h = 0; h < 2; ++h) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * h), q1 = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int k = 0; k < 4; ++k) {
                const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * k));
                const int j = 8 * h + 2 * k;
                const uint8_t s0 = x[i].scales[j], s1 = x[i].scales[j + 1];
                st16_mul_sub(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q0, shift), m3)), d * (s0 & 0xF), dmin * (s0 >> 4),
                             y + 16 * j);
                st16_mul_sub(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q1, shift), m3)), d * (s1 & 0xF), dmin * (s1 >> 4),
                             y + 16 * j + 16);
            }
        }
    }
}

static void qtk_dequantize_row_q3_K_neon(const void *vx, float *y, int64_t n) {
    const block_q3_K *x = vx;
    const uint8x16_t m3 = vdupq_n_u8(3), one = vdupq_n_u8(1);
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d_all = h2f(x[i].d);
        int8_t sc[16];
        q3_K_scales_neon(x[i].scales, sc);
        const uint8x16_t hm0 = vld1q_u8(x[i].hmask), hm1 = vld1q_u8(x[i].hmask + 16);
        for (int h = 0; h < 2; ++h) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * h), q1 = vld1q_u8(x[i].qs + 32 * h + 16);
            for (int k = 0; k < 4; ++k) {
                const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * k));
                const int8x16_t hs = vdupq_n_s8((int8_t)(-(4 * h + k)));
                const uint8x16_t h0 = vandq_u8(vshlq_u8(hm0, hs), one), h1 = vandq_u8(vshlq_u8(hm1, hs), one);
                const int8x16_t l0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q0, shift), m3)),
                                              vreinterpretq_s8_u8(vshlq_n_u8(veorq_u8(h0, one), 2)));
                const int8x16_t l1 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q1, shift), m3)),
                                              vreinterpretq_s8_u8(vshlq_n_u8(veorq_u8(h1, one), 2)));
                const int j = 8 * h + 2 * k;
                st16_mul(l0, d_all * sc[j], y + 16 * j);
                st16_mul(l1, d_all * sc[j + 1], y + 16 * j + 16);
            }
        }
    }
}

static void qtk_dequantize_row_q5_K_neon(const void *vx, float *y, int64_t n) {
    const block_q5_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        uint8_t sc[8], mn[8];
        k4_scales_neon(x[i].scales, sc, mn);
        const uint8x16_t h0 = vld1q_u8(x[i].qh), h1 = vld1q_u8(x[i].qh + 16);
        for (int c = 0; c < 4; ++c) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * c), q1 = vld1q_u8(x[i].qs + 32 * c + 16);
            for (int half = 0; half < 2; ++half) {
                const int j = 2 * c + half;
                const int8x16_t hs = vdupq_n_s8((int8_t)(4 - j));
                const int8x16_t l0 = vorrq_s8(half ? hi_nib(q0) : lo_nib(q0),
                                              vreinterpretq_s8_u8(vandq_u8(vshlq_u8(h0, hs), vdupq_n_u8(0x10))));
                const int8x16_t l1 = vorrq_s8(half ? hi_nib(q1) : lo_nib(q1),
                                              vreinterpretq_s8_u8(vandq_u8(vshlq_u8(h1, hs), vdupq_n_u8(0x10))));
                st16_mul_sub(l0, d * sc[j], dmin * mn[j], y + 32 * j);
                st16_mul_sub(l1, d * sc[j], dmin * mn[j], y + 32 * j + 16);
            }
        }
    }
}

static void qtk_dequantize_row_iq4_xs_neon(const void *vx, float *y, int64_t n) {
    const block_iq4_xs *x = vx;
    const int8x16_t lut = vld1q_s8(qtk_kvalues_iq4nl);
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            const uint8x16_t q = vld1q_u8(x[i].qs + 16 * ib);
            const float dl = d * (ls - 32);
            st16_mul(vqtbl1q_s8(lut, vandq_u8(q, vdupq_n_u8(0x0F))), dl, y + 32 * ib);
            st16_mul(vqtbl1q_s8(lut, vshrq_n_u8(q, 4)), dl, y + 32 * ib + 16);
        }
    }
}

static void qtk_dequantize_row_tq2_0_neon(const void *vx, float *y, int64_t n) {
    const block_tq2_0 *x = vx;
    const uint8x16_t m3 = vdupq_n_u8(3);
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = h2f(x[i].d);
        for (int c = 0; c < 2; ++c) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + 32 * c), q1 = vld1q_u8(x[i].qs + 32 * c + 16);
            for (int k = 0; k < 4; ++k) {
                const int8x16_t shift = vdupq_n_s8((int8_t)(-2 * k));
                st16_mul(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q0, shift), m3)), vdupq_n_s8(1)), d,
                         y + 128 * c + 32 * k);
                st16_mul(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(vshlq_u8(q1, shift), m3)), vdupq_n_s8(1)), d,
                         y + 128 * c + 32 * k + 16);
            }
        }
    }
}

static void qtk_dequantize_row_tq1_0_neon(const void *vx, float *y, int64_t n) {
    const block_tq1_0 *x = vx;
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    static const uint8_t hp[16] = {1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27};
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        const float d = h2f(x[i].d);
        const uint8x16_t a0 = vld1q_u8(x[i].qs), a1 = vld1q_u8(x[i].qs + 16), b = vld1q_u8(x[i].qs + 32);
        for (int k = 0; k < 5; ++k) {
            st16_mul(trits16(a0, pow3[k]), d, y + 32 * k);
            st16_mul(trits16(a1, pow3[k]), d, y + 32 * k + 16);
            st16_mul(trits16(b, pow3[k]), d, y + 160 + 16 * k);
        }
        uint32_t qh4;
        memcpy(&qh4, x[i].qh, 4);
        const uint8x16_t q = vmulq_u8(vreinterpretq_u8_u32(vdupq_n_u32(qh4)), vld1q_u8(hp));
        const uint8x8_t lo = vshrn_n_u16(vmull_u8(vget_low_u8(q), vdup_n_u8(3)), 8);
        const uint8x8_t hi = vshrn_n_u16(vmull_u8(vget_high_u8(q), vdup_n_u8(3)), 8);
        st16_mul(vsubq_s8(vreinterpretq_s8_u8(vcombine_u8(lo, hi)), vdupq_n_s8(1)), d, y + 240);
    }
}

const qtk_kernels qtk_kernels_neon = {
    .name = "neon",
    .dequantize = {
        [QTK_TYPE_F16] = qtk_dequantize_row_f16_neon,
        [QTK_TYPE_BF16] = qtk_dequantize_row_bf16_neon,
        [QTK_TYPE_Q4_0] = qtk_dequantize_row_q4_0_neon,
        [QTK_TYPE_Q4_1] = qtk_dequantize_row_q4_1_neon,
        [QTK_TYPE_Q5_0] = qtk_dequantize_row_q5_0_neon,
        [QTK_TYPE_Q5_1] = qtk_dequantize_row_q5_1_neon,
        [QTK_TYPE_Q8_0] = qtk_dequantize_row_q8_0_neon,
        [QTK_TYPE_Q4_K] = qtk_dequantize_row_q4_K_neon,
        [QTK_TYPE_Q6_K] = qtk_dequantize_row_q6_K_neon,
        [QTK_TYPE_IQ4_NL] = qtk_dequantize_row_iq4_nl_neon,
        [QTK_TYPE_Q8_1] = qtk_dequantize_row_q8_1_neon,
        [QTK_TYPE_Q8_K] = qtk_dequantize_row_q8_K_neon,
        [QTK_TYPE_Q2_K] = qtk_dequantize_row_q2_K_neon,
        [QTK_TYPE_Q3_K] = qtk_dequantize_row_q3_K_neon,
        [QTK_TYPE_Q5_K] = qtk_dequantize_row_q5_K_neon,
        [QTK_TYPE_IQ4_XS] = qtk_dequantize_row_iq4_xs_neon,
        [QTK_TYPE_TQ1_0] = qtk_dequantize_row_tq1_0_neon,
        [QTK_TYPE_TQ2_0] = qtk_dequantize_row_tq2_0_neon,
    },
    .vec_dot = {
        [QTK_TYPE_F32] = qtk_vec_dot_f32_neon,
        [QTK_TYPE_F16] = qtk_vec_dot_f16_neon,
        [QTK_TYPE_BF16] = qtk_vec_dot_bf16_neon,
        [QTK_TYPE_Q4_0] = qtk_vec_dot_q4_0_q8_0_neon,
        [QTK_TYPE_Q4_1] = qtk_vec_dot_q4_1_q8_1_neon,
        [QTK_TYPE_Q5_0] = qtk_vec_dot_q5_0_q8_0_neon,
        [QTK_TYPE_Q5_1] = qtk_vec_dot_q5_1_q8_1_neon,
        [QTK_TYPE_Q8_0] = qtk_vec_dot_q8_0_q8_0_neon,
        [QTK_TYPE_Q2_K] = qtk_vec_dot_q2_K_q8_K_neon,
        [QTK_TYPE_Q3_K] = qtk_vec_dot_q3_K_q8_K_neon,
        [QTK_TYPE_Q4_K] = qtk_vec_dot_q4_K_q8_K_neon,
        [QTK_TYPE_Q5_K] = qtk_vec_dot_q5_K_q8_K_neon,
        [QTK_TYPE_Q6_K] = qtk_vec_dot_q6_K_q8_K_neon,
        [QTK_TYPE_IQ4_NL] = qtk_vec_dot_iq4_nl_q8_0_neon,
        [QTK_TYPE_IQ4_XS] = qtk_vec_dot_iq4_xs_q8_K_neon,
        [QTK_TYPE_TQ1_0] = qtk_vec_dot_tq1_0_q8_K_neon,
        [QTK_TYPE_TQ2_0] = qtk_vec_dot_tq2_0_q8_K_neon,
    },
    .quantize_q8_0 = qtk_quantize_row_q8_0_neon,
    .quantize_q8_1 = qtk_quantize_row_q8_1_neon,
    .quantize_q8_K = qtk_quantize_row_q8_K_neon,
    .quantize_f16 = qtk_quantize_row_f16,      /* the reference (F16/BF16 activations only) */
    .quantize_bf16 = qtk_quantize_row_bf16,
    .quantize_q8g = qtk_quantize_row_q8g_ref,
    .quantize_act_q8_0 = qtk_quantize_act_q8_0_neon,
    .quantize_act_q8_1 = qtk_quantize_act_q8_1_neon,
    .has_nonfinite = qtk_has_nonfinite,
    .vec_dot_custom = qtk_vec_dot_custom_q8g_neon,
    .dequantize_custom = qtk_dequantize_custom_ref,
};

#endif
