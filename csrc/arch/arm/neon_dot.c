/* arm64 NEON dot kernels of every type and the NEON kernel table (the quantizers and dequantizers
 * are in neon_quant.c). Compiled only on aarch64, where NEON is part of the base architecture, so no
 * target region is needed; other builds see an empty file.
 *
 * Only base armv8-a instructions are used (no dotprod extension): int8 products are widened with
 * vmull_s8 / vmlal_s8 and pairwise-accumulated into int32. Levels are formed signed where the
 * format is signed, so no bsums correction is needed except for the K-quant mins.
 */
#if defined(__aarch64__)

#include "arch/arm/simd_neon.h"

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

/* BF16 weights with F32 activations (QTK_ACT_F32): the F16 x F32 kernel with the bf16 widening */
static void qtk_vec_dot_bf16_f32_neon(int64_t n, float *s, const void *vx, const void *vy) {
    const uint16_t *x = vx;
    const float *y = vy;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = vfmaq_f32(a0, ld_bf16x4(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, ld_bf16x4(x + i + 4), vld1q_f32(y + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; ++i) {
        sum += qtk_bf16_to_fp32(x[i]) * y[i];
    }
    *s = sum;
}

/* ---------------------------------------------------------------- 32-element formats */

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
        [QTK_TYPE_IQ2_XXS] = qtk_vec_dot_iq2_xxs_q8_K_neon,
        [QTK_TYPE_IQ2_XS] = qtk_vec_dot_iq2_xs_q8_K_neon,
        [QTK_TYPE_IQ2_S] = qtk_vec_dot_iq2_s_q8_K_neon,
        [QTK_TYPE_IQ3_XXS] = qtk_vec_dot_iq3_xxs_q8_K_neon,
        [QTK_TYPE_IQ3_S] = qtk_vec_dot_iq3_s_q8_K_neon,
        [QTK_TYPE_IQ1_S] = qtk_vec_dot_iq1_s_q8_K_neon,
        [QTK_TYPE_IQ1_M] = qtk_vec_dot_iq1_m_q8_K_neon,
    },
    .vec_dot_bf16_f32 = qtk_vec_dot_bf16_f32_neon,   /* no tile: a gemm runs it per token, as for F16 */
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
