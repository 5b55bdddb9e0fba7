/* arm64 NEON activation quantizers (Q8_0, Q8_1, Q8_K and their matmul float tails) and dequantizers.
 * Each gives the reference's bits: the same float operations in the same order, vcvtaq (round half
 * away from zero) for roundf, the 1.5 * 2^23 addition for nearest_int and truncating narrows for the
 * (int8_t) casts. Blocks holding a NaN go through the reference code itself (what a NaN does to its
 * maxima depends on how the compiler lowered them). Compiled only on aarch64.
 */
#if defined(__aarch64__)

#include "arch/arm/simd_neon.h"

/* ---------------------------------------------------------------- activation quantizers */

static inline int has_nan(const float *x, int n) {
    uint32x4_t bad = vdupq_n_u32(0);
    for (int j = 0; j < n; j += 4) {
        const float32x4_t v = vld1q_f32(x + j);
        bad = vorrq_u32(bad, vmvnq_u32(vceqq_f32(v, v)));
    }
    return vmaxvq_u32(bad) != 0;
}

/* roundf then the reference's float-to-int conversion (qtk_trunc_f2i: x86 semantics), so NaN and
 * values outside the int32 range become INT32_MIN; vcvtaq alone would saturate them. */
static inline int32x4_t cvta_x86(float32x4_t v) {
    const uint32x4_t in_range = vcaltq_f32(v, vdupq_n_f32(2147483648.0f));   /* |v| < 2^31, false for NaN */
    return vbslq_s32(in_range, vcvtaq_s32_f32(v), vdupq_n_s32(INT32_MIN));
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
        const int32x4_t a = cvta_x86(vmulq_n_f32(v[2 * k], id));
        const int32x4_t b = cvta_x86(vmulq_n_f32(v[2 * k + 1], id));
        w[k] = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
    }
    const int8x16_t q0 = vcombine_s8(vmovn_s16(w[0]), vmovn_s16(w[1]));
    const int8x16_t q1 = vcombine_s8(vmovn_s16(w[2]), vmovn_s16(w[3]));
    vst1q_s8(qs, q0);
    vst1q_s8(qs + 16, q1);
    *d_out = d;
    return vaddlvq_s8(q0) + vaddlvq_s8(q1);
}

void qtk_quantize_row_q8_0_neon(const float *x, void *vy, int64_t n, const float *qw) {
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

void qtk_quantize_row_q8_1_neon(const float *x, void *vy, int64_t n, const float *qw) {
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

void qtk_quantize_act_q8_0_neon(const float *x, void *y, int64_t n) {
    qtk_quantize_row_q8_0_neon(x, y, n, NULL);
    qtk_extend_q8_0(y, n / QK8_0);
}

void qtk_quantize_act_q8_1_neon(const float *x, void *y, int64_t n) {
    qtk_quantize_row_q8_1_neon(x, y, n, NULL);
    qtk_extend_q8_1(y, n / QK8_1);
}

void qtk_quantize_row_q8_K_neon(const float *x, void *vy, int64_t n, const float *qw) {
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

void qtk_dequantize_row_q4_0_neon(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; ++i, y += QK4_0) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const float d = h2f(x[i].d);
        st16_mul(vsubq_s8(lo_nib(q), vdupq_n_s8(8)), d, y);
        st16_mul(vsubq_s8(hi_nib(q), vdupq_n_s8(8)), d, y + 16);
    }
}

void qtk_dequantize_row_q4_1_neon(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; ++i, y += QK4_1) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        st16_affine(lo_nib(q), h2f(x[i].d), h2f(x[i].m), y);
        st16_affine(hi_nib(q), h2f(x[i].d), h2f(x[i].m), y + 16);
    }
}

void qtk_dequantize_row_q5_0_neon(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; ++i, y += QK5_0) {
        const uint32_t qh = rd32(x[i].qh);
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const float d = h2f(x[i].d);
        st16_mul(vsubq_s8(vorrq_s8(lo_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh))), vdupq_n_s8(16)), d, y);
        st16_mul(vsubq_s8(vorrq_s8(hi_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh >> 16))), vdupq_n_s8(16)), d, y + 16);
    }
}

void qtk_dequantize_row_q5_1_neon(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; ++i, y += QK5_1) {
        const uint32_t qh = rd32(x[i].qh);
        const uint8x16_t q = vld1q_u8(x[i].qs);
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        st16_affine(vorrq_s8(lo_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh))), d, m, y);
        st16_affine(vorrq_s8(hi_nib(q), vreinterpretq_s8_u8(bit16_to_0x10(qh >> 16))), d, m, y + 16);
    }
}

void qtk_dequantize_row_q8_0_neon(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; ++i, y += QK8_0) {
        st16_mul(vld1q_s8(x[i].qs), h2f(x[i].d), y);
        st16_mul(vld1q_s8(x[i].qs + 16), h2f(x[i].d), y + 16);
    }
}

void qtk_dequantize_row_iq4_nl_neon(const void *vx, float *y, int64_t n) {
    const block_iq4_nl *x = vx;
    const int8x16_t lut = vld1q_s8(qtk_kvalues_iq4nl);
    for (int64_t i = 0; i < n / QK4_NL; ++i, y += QK4_NL) {
        const uint8x16_t q = vld1q_u8(x[i].qs);
        st16_mul(vqtbl1q_s8(lut, vandq_u8(q, vdupq_n_u8(0x0F))), h2f(x[i].d), y);
        st16_mul(vqtbl1q_s8(lut, vshrq_n_u8(q, 4)), h2f(x[i].d), y + 16);
    }
}

void qtk_dequantize_row_q4_K_neon(const void *vx, float *y, int64_t n) {
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

void qtk_dequantize_row_q6_K_neon(const void *vx, float *y, int64_t n) {
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

void qtk_dequantize_row_f16_neon(const void *vx, float *y, int64_t n) {
    const qtk_half *x = vx;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        vst1q_f32(y + i, ld_f16x4(x + i));
    }
    for (; i < n; ++i) {
        y[i] = h2f(x[i]);
    }
}

void qtk_dequantize_row_bf16_neon(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        vst1q_f32(y + i, ld_bf16x4(x + i));
    }
    for (; i < n; ++i) {
        y[i] = qtk_bf16_to_fp32(x[i]);
    }
}

void qtk_dequantize_row_q8_1_neon(const void *vx, float *y, int64_t n) {
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / QK8_1; ++i, y += QK8_1) {
        st16_mul(vld1q_s8(x[i].qs), h2f(x[i].d), y);
        st16_mul(vld1q_s8(x[i].qs + 16), h2f(x[i].d), y + 16);
    }
}

void qtk_dequantize_row_q8_K_neon(const void *vx, float *y, int64_t n) {
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i, y += QK_K) {
        for (int j = 0; j < QK_K; j += 16) {
            st16_mul(vld1q_s8(x[i].qs + j), x[i].d, y + j);
        }
    }
}

void qtk_dequantize_row_q2_K_neon(const void *vx, float *y, int64_t n) {
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

void qtk_dequantize_row_q3_K_neon(const void *vx, float *y, int64_t n) {
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

void qtk_dequantize_row_q5_K_neon(const void *vx, float *y, int64_t n) {
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

void qtk_dequantize_row_iq4_xs_neon(const void *vx, float *y, int64_t n) {
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

void qtk_dequantize_row_tq2_0_neon(const void *vx, float *y, int64_t n) {
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

void qtk_dequantize_row_tq1_0_neon(const void *vx, float *y, int64_t n) {
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

#endif
