/* AVX2 + FMA + F16C dot kernels (one weight row, one companion activation row) and the AVX2
 * kernel table. Compiled in every x86-64 build inside a target region; isa.c selects the table
 * only on CPUs that report AVX2, FMA, F16C and OS support for YMM state.
 *
 * Integer sums per sub-block are exact, as in the reference; only the float accumulation over
 * blocks runs in a different order (eight lanes with fused multiply-adds).
 */
#if defined(__x86_64__) || defined(__i386__)

#include "arch/x86/simd_avx2.h"
#include "ref/kernels.h"

#include "arch/x86/avx2_begin.h"

#include "arch/x86/simd_x86.h"
#include "ref/common.h"

/* The float types F32, F16 and BF16, and BF16 x F32, are register tiles in avx2_float.c. */

/* ---------------------------------------------------------------- 32-element formats */

/* Q4_0: sum (q - 8) y = sum q y - 8 sum y; q y with unsigned q needs no sign trick and the
 * 8 sum y part is one scalar multiply-add per block on the precomputed level sums. */
static void qtk_vec_dot_q4_0_q8_0_avx2(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float corr = 0.0f;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const float d0 = qtk_h2f(x[i].d) * YD(y, nb, i), d1 = qtk_h2f(x[i + 1].d) * YD(y, nb, i + 1);
        const __m256i p0 = dot_u8s8(nibbles32(x[i].qs), loadu256(y[i].qs));
        const __m256i p1 = dot_u8s8(nibbles32(x[i + 1].qs), loadu256(y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d1), _mm256_cvtepi32_ps(p1), acc1);
        corr += d0 * YS(y, nb, i) + d1 * YS(y, nb, i + 1);
    }
    for (; i < nb; ++i) {
        const float d0 = qtk_h2f(x[i].d) * YD(y, nb, i);
        const __m256i p0 = dot_u8s8(nibbles32(x[i].qs), loadu256(y[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(p0), acc0);
        corr += d0 * YS(y, nb, i);
    }
    *s = hsum_f32x8(_mm256_add_ps(acc0, acc1)) - 8.0f * corr;
}

static void qtk_vec_dot_q4_1_q8_1_avx2(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    const int64_t nb = n / QK4_1;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float summs = 0.0f;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i p0 = dot_u8s8(nibbles32(x[i].qs), loadu256(y[i].qs));
        const __m256i p1 = dot_u8s8(nibbles32(x[i + 1].qs), loadu256(y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(qtk_h2f(x[i].d) * YD(y, nb, i)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(qtk_h2f(x[i + 1].d) * YD(y, nb, i + 1)), _mm256_cvtepi32_ps(p1), acc1);
        summs += qtk_h2f(x[i].m) * YS(y, nb, i) + qtk_h2f(x[i + 1].m) * YS(y, nb, i + 1);
    }
    for (; i < nb; ++i) {
        const __m256i p = dot_u8s8(nibbles32(x[i].qs), loadu256(y[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(qtk_h2f(x[i].d) * YD(y, nb, i)), _mm256_cvtepi32_ps(p), acc0);
        summs += qtk_h2f(x[i].m) * YS(y, nb, i);
    }
    *s = hsum_f32x8(_mm256_add_ps(acc0, acc1)) + summs;
}

/* Q5_0: sum (q5 - 16) y = sum q5 y - 16 sum y, as for Q4_0 */
static void qtk_vec_dot_q5_0_q8_0_avx2(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK5_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const __m256i b4 = _mm256_set1_epi8(0x10);
    float corr = 0.0f;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const float d0 = qtk_h2f(x[i].d) * YD(y, nb, i), d1 = qtk_h2f(x[i + 1].d) * YD(y, nb, i + 1);
        const __m256i q0 = _mm256_or_si256(nibbles32(x[i].qs), _mm256_and_si256(bits32_to_mask(rd_u32(x[i].qh)), b4));
        const __m256i q1 = _mm256_or_si256(nibbles32(x[i + 1].qs), _mm256_and_si256(bits32_to_mask(rd_u32(x[i + 1].qh)), b4));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(dot_u8s8(q0, loadu256(y[i].qs))), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d1), _mm256_cvtepi32_ps(dot_u8s8(q1, loadu256(y[i + 1].qs))), acc1);
        corr += d0 * YS(y, nb, i) + d1 * YS(y, nb, i + 1);
    }
    for (; i < nb; ++i) {
        const float d0 = qtk_h2f(x[i].d) * YD(y, nb, i);
        const __m256i q0 = _mm256_or_si256(nibbles32(x[i].qs), _mm256_and_si256(bits32_to_mask(rd_u32(x[i].qh)), b4));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(dot_u8s8(q0, loadu256(y[i].qs))), acc0);
        corr += d0 * YS(y, nb, i);
    }
    *s = hsum_f32x8(_mm256_add_ps(acc0, acc1)) - 16.0f * corr;
}

static void qtk_vec_dot_q5_1_q8_1_avx2(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    const int64_t nb = n / QK5_1;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    const __m256i b4 = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < nb; ++i) {
        const __m256i q = _mm256_or_si256(nibbles32(x[i].qs), _mm256_and_si256(bits32_to_mask(rd_u32(x[i].qh)), b4));
        const __m256i p = dot_u8s8(q, loadu256(y[i].qs));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(qtk_h2f(x[i].d) * YD(y, nb, i)), _mm256_cvtepi32_ps(p), acc);
        summs += qtk_h2f(x[i].m) * YS(y, nb, i);
    }
    *s = hsum_f32x8(acc) + summs;
}

static void qtk_vec_dot_q8_0_q8_0_avx2(int64_t n, float *s, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i p0 = dot_s8s8(loadu256(x[i].qs), loadu256(y[i].qs));
        const __m256i p1 = dot_s8s8(loadu256(x[i + 1].qs), loadu256(y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(qtk_h2f(x[i].d) * YD(y, nb, i)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(qtk_h2f(x[i + 1].d) * YD(y, nb, i + 1)), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; ++i) {
        const __m256i p0 = dot_s8s8(loadu256(x[i].qs), loadu256(y[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(qtk_h2f(x[i].d) * YD(y, nb, i)), _mm256_cvtepi32_ps(p0), acc0);
    }
    *s = hsum_f32x8(_mm256_add_ps(acc0, acc1));
}

static void qtk_vec_dot_iq4_nl_q8_0_avx2(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_NL;
    const __m256i lut = iq4_lut();
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const __m256i p0 = dot_s8s8(_mm256_shuffle_epi8(lut, nibbles32(x[i].qs)), loadu256(y[i].qs));
        const __m256i p1 = dot_s8s8(_mm256_shuffle_epi8(lut, nibbles32(x[i + 1].qs)), loadu256(y[i + 1].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(qtk_h2f(x[i].d) * YD(y, nb, i)), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(qtk_h2f(x[i + 1].d) * YD(y, nb, i + 1)), _mm256_cvtepi32_ps(p1), acc1);
    }
    for (; i < nb; ++i) {
        const __m256i p0 = dot_s8s8(_mm256_shuffle_epi8(lut, nibbles32(x[i].qs)), loadu256(y[i].qs));
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(qtk_h2f(x[i].d) * YD(y, nb, i)), _mm256_cvtepi32_ps(p0), acc0);
    }
    *s = hsum_f32x8(_mm256_add_ps(acc0, acc1));
}

/* ---------------------------------------------------------------- K-quants */

static void qtk_vec_dot_tq2_0_q8_K_avx2(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq2_0 *x = vx;
    const block_q8_K *y = vy;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; ++i) {
        __m256i sum16 = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int c = 0; c < 2; ++c) {
            const __m256i q = loadu256(x[i].qs + 32 * c);
            #pragma GCC unroll 8
            for (int k = 0; k < 4; ++k) {
                const __m256i qk = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(qk, loadu256(y[i].qs + 128 * c + 32 * k)));
            }
        }
        /* 8 pair sums of at most 2*2*127 per lane: int16 holds them */
        __m256i sumi = _mm256_madd_epi16(sum16, _mm256_set1_epi16(1));
        sumi = _mm256_sub_epi32(sumi, _mm256_madd_epi16(loadu256(y[i].bsums), _mm256_set1_epi16(1)));   /* sum(y), lane-wise */
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * qtk_h2f(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_f32x8(acc);
}

/* Trit k of every byte b: ((uint8)(b * 3^k) * 3) >> 8. With the byte in the high half of a 16-bit
 * lane, a 16-bit multiply by 3^k leaves (b * 3^k mod 256) << 8 and the high half of a multiply by 3
 * is the trit. vlo holds the low bytes moved up (v << 8), vhi the high bytes in place (v & 0xFF00);
 * p holds 3^k per 16-bit lane. */
static inline __m256i trits256(__m256i vlo, __m256i vhi, __m256i p) {
    const __m256i three = _mm256_set1_epi16(3);
    const __m256i lo = _mm256_mulhi_epu16(_mm256_mullo_epi16(vlo, p), three);
    const __m256i hi = _mm256_mulhi_epu16(_mm256_mullo_epi16(vhi, p), three);
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 8));
}

static void qtk_vec_dot_tq1_0_q8_K_avx2(int64_t n, float *s, const void *vx, const void *vy) {
    const block_tq1_0 *x = vx;
    const block_q8_K *y = vy;
    static const short pow3[5] = {1, 3, 9, 27, 81};
    const __m256i hmask = _mm256_set1_epi16((short)0xFF00);
    /* per-lane powers for the last 32 elements: 3^4 for bytes 32..47 (elements 224..239), then 3^k
     * for qh byte j at position 4k + j (elements 240..255) */
    const __m256i ptail = _mm256_setr_epi16(81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const int8_t *q8 = y[i].qs;
        const __m256i a = loadu256(x[i].qs);
        const __m128i b128 = _mm_loadu_si128((const __m128i *)(x[i].qs + 32));
        const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(b128), b128, 1);
        uint32_t qh4;
        memcpy(&qh4, x[i].qh, 4);
        const __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(b128), _mm_set1_epi32((int)qh4), 1);
        const __m256i alo = _mm256_slli_epi16(a, 8), ahi = _mm256_and_si256(a, hmask);
        const __m256i blo = _mm256_slli_epi16(b, 8), bhi = _mm256_and_si256(b, hmask);
        __m256i sum16 = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = 0; k < 5; ++k) {
            const __m256i tk = trits256(alo, ahi, _mm256_set1_epi16(pow3[k]));
            sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(tk, loadu256(q8 + 32 * k)));
        }
        /* bytes 32..47: trits k and k+1 side by side cover elements 160 + 16k .. 160 + 16k + 31 */
#pragma GCC unroll 8
        for (int k = 0; k < 4; k += 2) {
            const __m256i p = _mm256_inserti128_si256(_mm256_set1_epi16(pow3[k]), _mm_set1_epi16(pow3[k + 1]), 1);
            sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(trits256(blo, bhi, p), loadu256(q8 + 160 + 16 * k)));
        }
        const __m256i tt = trits256(_mm256_slli_epi16(t, 8), _mm256_and_si256(t, hmask), ptail);
        sum16 = _mm256_add_epi16(sum16, _mm256_maddubs_epi16(tt, loadu256(q8 + 224)));
        __m256i sumi = _mm256_madd_epi16(sum16, _mm256_set1_epi16(1));
        sumi = _mm256_sub_epi32(sumi, _mm256_madd_epi16(loadu256(y[i].bsums), _mm256_set1_epi16(1)));   /* sum(y), lane-wise */
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * qtk_h2f(x[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_f32x8(acc);
}

/* ---------------------------------------------------------------- CustomQuant with Q8G */

static void qtk_vec_dot_custom_q8g_avx2(const qtk_custom_params *p, int64_t n, float *s, const void *vx,
                                        const void *vy) {
    const uint8_t *x = vx, *y = vy;
    const int g = p->group, off = p->symmetric ? 2 : 4;
    uint8_t L[1024 + 32];
    float sum = 0.0f;
    for (int64_t b = 0; b < n / g; ++b, x += p->block_bytes, y += QTK_Q8G_BYTES(g)) {
        qtk_custom_unpack_avx2(x + off, g, p->bits, L);
        const int8_t *qs = (const int8_t *)(y + 8);
        __m256i acc = _mm256_setzero_si256();
        int j = 0;
        for (; j + 16 <= g; j += 16) {
            const __m256i l16 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(L + j)));
            const __m256i y16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(qs + j)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(l16, y16));
        }
        int32_t isum = hsum_i32x8(acc);
        for (; j < g; ++j) {
            isum += L[j] * qs[j];
        }
        int32_t ysum;
        float yd;
        memcpy(&yd, y, 4);
        memcpy(&ysum, y + 4, 4);
        qtk_half dh;
        memcpy(&dh, x, 2);
        const float d = qtk_h2f(dh);
        if (p->symmetric) {
            sum += (d * yd) * (float)(isum - (1 << (p->bits - 1)) * ysum);
        } else {
            qtk_half mh;
            memcpy(&mh, x + 2, 2);
            sum += (d * yd) * (float)isum + (qtk_h2f(mh) * yd) * (float)ysum;
        }
    }
    *s = sum;
}

#include "arch/x86/avx2_end.h"

const qtk_kernels qtk_kernels_avx2 = {
    .name = "avx2",
    .dequantize = {
        [QTK_TYPE_F16] = qtk_dequantize_row_f16_avx2,
        [QTK_TYPE_BF16] = qtk_dequantize_row_bf16_avx2,
        [QTK_TYPE_Q4_0] = qtk_dequantize_row_q4_0_avx2,
        [QTK_TYPE_Q4_1] = qtk_dequantize_row_q4_1_avx2,
        [QTK_TYPE_Q5_0] = qtk_dequantize_row_q5_0_avx2,
        [QTK_TYPE_Q5_1] = qtk_dequantize_row_q5_1_avx2,
        [QTK_TYPE_Q8_0] = qtk_dequantize_row_q8_0_avx2,
        [QTK_TYPE_Q8_1] = qtk_dequantize_row_q8_1_avx2,
        [QTK_TYPE_Q2_K] = qtk_dequantize_row_q2_K_avx2,
        [QTK_TYPE_Q3_K] = qtk_dequantize_row_q3_K_avx2,
        [QTK_TYPE_Q4_K] = qtk_dequantize_row_q4_K_avx2,
        [QTK_TYPE_Q5_K] = qtk_dequantize_row_q5_K_avx2,
        [QTK_TYPE_Q6_K] = qtk_dequantize_row_q6_K_avx2,
        [QTK_TYPE_Q8_K] = qtk_dequantize_row_q8_K_avx2,
        [QTK_TYPE_IQ4_NL] = qtk_dequantize_row_iq4_nl_avx2,
        [QTK_TYPE_IQ4_XS] = qtk_dequantize_row_iq4_xs_avx2,
        [QTK_TYPE_TQ1_0] = qtk_dequantize_row_tq1_0_avx2,
        [QTK_TYPE_TQ2_0] = qtk_dequantize_row_tq2_0_avx2,
        [QTK_TYPE_IQ2_XXS] = qtk_dequantize_row_iq2_xxs_avx2,
        [QTK_TYPE_IQ2_XS] = qtk_dequantize_row_iq2_xs_avx2,
        [QTK_TYPE_IQ2_S] = qtk_dequantize_row_iq2_s_avx2,
        [QTK_TYPE_IQ3_XXS] = qtk_dequantize_row_iq3_xxs_avx2,
        [QTK_TYPE_IQ3_S] = qtk_dequantize_row_iq3_s_avx2,
        [QTK_TYPE_IQ1_S] = qtk_dequantize_row_iq1_s_avx2,
        [QTK_TYPE_IQ1_M] = qtk_dequantize_row_iq1_m_avx2,
    },
    .vec_dot4 = {
        [QTK_TYPE_Q4_0] = qtk_vec_dot4_q4_0_q8_0_avx2,
        [QTK_TYPE_Q8_0] = qtk_vec_dot4_q8_0_q8_0_avx2,
        [QTK_TYPE_Q4_1] = qtk_vec_dot4_q4_1_q8_1_avx2,
        [QTK_TYPE_Q5_0] = qtk_vec_dot4_q5_0_q8_0_avx2,
        [QTK_TYPE_Q5_1] = qtk_vec_dot4_q5_1_q8_1_avx2,
        [QTK_TYPE_IQ4_NL] = qtk_vec_dot4_iq4_nl_q8_0_avx2,
    },
    .vec_dot_tile = {
        [QTK_TYPE_F32] = qtk_vec_dot_tile_f32_avx2,
        [QTK_TYPE_F16] = qtk_vec_dot_tile_f16_avx2,
        [QTK_TYPE_BF16] = qtk_vec_dot_tile_bf16_avx2,
    },
    .unpack = {
        [QTK_TYPE_Q2_K] = qtk_unpack_q2_K_avx2,
        [QTK_TYPE_Q3_K] = qtk_unpack_q3_K_avx2,
        [QTK_TYPE_Q4_K] = qtk_unpack_q4_K_avx2,
        [QTK_TYPE_Q5_K] = qtk_unpack_q5_K_avx2,
        [QTK_TYPE_Q6_K] = qtk_unpack_q6_K_avx2,
        [QTK_TYPE_IQ2_XXS] = qtk_unpack_iq2_xxs_avx2,
        [QTK_TYPE_IQ2_XS] = qtk_unpack_iq2_xs_avx2,
        [QTK_TYPE_IQ2_S] = qtk_unpack_iq2_s_avx2,
        [QTK_TYPE_IQ3_XXS] = qtk_unpack_iq3_xxs_avx2,
        [QTK_TYPE_IQ3_S] = qtk_unpack_iq3_s_avx2,
        [QTK_TYPE_IQ1_S] = qtk_unpack_iq1_s_avx2,
        [QTK_TYPE_IQ1_M] = qtk_unpack_iq1_m_avx2,
    },
    .vec_dot8u = {
        [QTK_TYPE_Q2_K] = qtk_vec_dot8u_q2_K_q8_K_avx2,
        [QTK_TYPE_Q3_K] = qtk_vec_dot8u_q3_K_q8_K_avx2,
        [QTK_TYPE_Q4_K] = qtk_vec_dot8u_q4_K_q8_K_avx2,
        [QTK_TYPE_Q5_K] = qtk_vec_dot8u_q5_K_q8_K_avx2,
        [QTK_TYPE_Q6_K] = qtk_vec_dot8u_q6_K_q8_K_avx2,
        [QTK_TYPE_IQ2_XXS] = qtk_vec_dot8u_iq2_xxs_q8_K_avx2,
        [QTK_TYPE_IQ2_XS] = qtk_vec_dot8u_iq2_xs_q8_K_avx2,
        [QTK_TYPE_IQ2_S] = qtk_vec_dot8u_iq2_s_q8_K_avx2,
        [QTK_TYPE_IQ3_XXS] = qtk_vec_dot8u_iq3_xxs_q8_K_avx2,
        [QTK_TYPE_IQ3_S] = qtk_vec_dot8u_iq3_s_q8_K_avx2,
        [QTK_TYPE_IQ1_S] = qtk_vec_dot8u_iq1_s_q8_K_avx2,
        [QTK_TYPE_IQ1_M] = qtk_vec_dot8u_iq1_m_q8_K_avx2,
    },
    .vec_dot8 = {
        [QTK_TYPE_Q2_K] = qtk_vec_dot8_q2_K_q8_K_avx2,
        [QTK_TYPE_Q3_K] = qtk_vec_dot8_q3_K_q8_K_avx2,
        [QTK_TYPE_Q4_K] = qtk_vec_dot8_q4_K_q8_K_avx2,
        [QTK_TYPE_Q5_K] = qtk_vec_dot8_q5_K_q8_K_avx2,
        [QTK_TYPE_Q6_K] = qtk_vec_dot8_q6_K_q8_K_avx2,
        [QTK_TYPE_IQ4_XS] = qtk_vec_dot8_iq4_xs_q8_K_avx2,
    },
    .vec_dot = {
        [QTK_TYPE_F32] = qtk_vec_dot_f32_tile1_avx2,
        [QTK_TYPE_F16] = qtk_vec_dot_f16_tile1_avx2,
        [QTK_TYPE_BF16] = qtk_vec_dot_bf16_tile1_avx2,
        [QTK_TYPE_Q4_0] = qtk_vec_dot_q4_0_q8_0_avx2,
        [QTK_TYPE_Q4_1] = qtk_vec_dot_q4_1_q8_1_avx2,
        [QTK_TYPE_Q5_0] = qtk_vec_dot_q5_0_q8_0_avx2,
        [QTK_TYPE_Q5_1] = qtk_vec_dot_q5_1_q8_1_avx2,
        [QTK_TYPE_Q8_0] = qtk_vec_dot_q8_0_q8_0_avx2,
        [QTK_TYPE_Q2_K] = qtk_vec_dot_q2_K_q8_K_avx2,
        [QTK_TYPE_Q3_K] = qtk_vec_dot_q3_K_q8_K_avx2,
        [QTK_TYPE_Q4_K] = qtk_vec_dot_q4_K_q8_K_avx2,
        [QTK_TYPE_Q5_K] = qtk_vec_dot_q5_K_q8_K_avx2,
        [QTK_TYPE_Q6_K] = qtk_vec_dot_q6_K_q8_K_avx2,
        [QTK_TYPE_IQ4_NL] = qtk_vec_dot_iq4_nl_q8_0_avx2,
        [QTK_TYPE_IQ4_XS] = qtk_vec_dot_iq4_xs_q8_K_avx2,
        [QTK_TYPE_TQ1_0] = qtk_vec_dot_tq1_0_q8_K_avx2,
        [QTK_TYPE_TQ2_0] = qtk_vec_dot_tq2_0_q8_K_avx2,
        [QTK_TYPE_IQ2_XXS] = qtk_vec_dot_iq2_xxs_q8_K_avx2,
        [QTK_TYPE_IQ2_XS] = qtk_vec_dot_iq2_xs_q8_K_avx2,
        [QTK_TYPE_IQ2_S] = qtk_vec_dot_iq2_s_q8_K_avx2,
        [QTK_TYPE_IQ3_XXS] = qtk_vec_dot_iq3_xxs_q8_K_avx2,
        [QTK_TYPE_IQ3_S] = qtk_vec_dot_iq3_s_q8_K_avx2,
        [QTK_TYPE_IQ1_S] = qtk_vec_dot_iq1_s_q8_K_avx2,
        [QTK_TYPE_IQ1_M] = qtk_vec_dot_iq1_m_q8_K_avx2,
    },
    .vec_dot_bf16_f32 = qtk_vec_dot_bf16_f32_tile1_avx2,
    .vec_dot_tile_bf16_f32 = qtk_vec_dot_tile_bf16_f32_avx2,
    .quantize_q8_0 = qtk_quantize_row_q8_0_avx2,
    .quantize_q8_1 = qtk_quantize_row_q8_1_avx2,
    .quantize_q8_K = qtk_quantize_row_q8_K_avx2,
    .quantize_f16 = qtk_quantize_row_f16_avx2,
    .quantize_bf16 = qtk_quantize_row_bf16_avx2,
    .quantize_q8g = qtk_quantize_row_q8g_avx2,
    .quantize_act_q8_0 = qtk_quantize_act_q8_0_avx2,
    .quantize_act_q8_1 = qtk_quantize_act_q8_1_avx2,
    .has_nonfinite = qtk_has_nonfinite_avx2,
    .vec_dot_custom = qtk_vec_dot_custom_q8g_avx2,
    .dequantize_custom = qtk_dequantize_custom_avx2,
};

#endif
