/* AVX2 dot kernels of the Q8_K-paired K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS: one weight
 * row against one activation row (gemv), and one weight row against eight activation rows (the
 * gemm micro-kernel: each weight super-block is decoded once for eight tokens).
 *
 * Two kernels per type, one arithmetic: per super-block and (row, token) the exact integer
 * totals tot (level x activation x sub-block scale, less the offset term of Q3_K / Q6_K, whose
 * signed levels are stored unsigned) and mt (the mins term of Q2_K / Q4_K / Q5_K), then the float
 * chain s = s + (dx * dy) * tot, s = s - (dmin * dy) * mt, super-block by super-block (multiplies
 * and adds, never fused):
 *  - qtk_vec_dot_*: one row, one token (the gemv; reduces tot and mt with horizontal adds per
 *    super-block);
 *  - qtk_vec_dot8_*: one row, eight tokens (the gemm micro-kernel: each weight super-block is
 *    decoded once, the eight tokens' sums reduced together, the chain one token per lane).
 * So every (row, token) result has the same bits whichever kernel computed it. (An eight-row gemv
 * kernel of the same arithmetic was faster in cache but 10-35% slower streaming from memory, with
 * or without software prefetch: it is not used.)
 */
#if defined(__x86_64__) || defined(__i386__)

#include "arch/x86/simd_avx2.h"

#include "arch/x86/avx2_begin.h"

#include "arch/x86/simd_x86.h"
#include "ref/common.h"

/* ---------------------------------------------------------------- helpers */

/* The decoded super-block: for each 32-element chunk j, the level bytes L[j] and the int16 scales
 * S[j] (one per 16-element half); `sgn` types (IQ4_XS) hold |level| in L[j] and the signed levels
 * in Q[j]. */
typedef struct {
    __m256i L[8], S[8], Q[8];
} kblock;

static inline __attribute__((always_inline)) __m256i chunk_dot(const kblock *b, int j, const int8_t *q8, int sgn) {
    const __m256i y = loadu256(q8 + 32 * j);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(b->L[j], sgn ? _mm256_sign_epi8(y, b->Q[j]) : y), b->S[j]);
}

/* per token t: the 8-lane integer sums of super-block i (the chunk loop stays rolled for the plain
 * types: fully unrolled, gcc schedules all 64 products first and spills them; the sign-trick type
 * runs faster unrolled) */
static inline __attribute__((always_inline)) void group_sumi(const kblock *b, const block_q8_K *const y[8], int64_t i, int sgn, __m256i acc[8]) {
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) {
        acc[t] = _mm256_setzero_si256();
    }
    if (sgn) {
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) {
#pragma GCC unroll 8
            for (int t = 0; t < 8; ++t) {
                acc[t] = _mm256_add_epi32(acc[t], chunk_dot(b, j, y[t][i].qs, 1));
            }
        }
    } else {
#pragma GCC unroll 1
        for (int j = 0; j < 8; ++j) {
#pragma GCC unroll 8
            for (int t = 0; t < 8; ++t) {
                acc[t] = _mm256_add_epi32(acc[t], chunk_dot(b, j, y[t][i].qs, 0));
            }
        }
    }
}

/* The min / offset terms: F holds 16 int16 factors, one per 16-element bsum; madd gives 8 int32
 * lanes (bsum pairs). */
static inline __attribute__((always_inline)) __m256i bsums_f(const int16_t *bsums, __m256i F) {
    return _mm256_madd_epi16(loadu256(bsums), F);
}

/* ---------------------------------------------------------------- decoders */

/* Q4_K / Q5_K: 32-element sub-blocks, 6-bit scales and mins; mins as factor pairs (m, m) */
static inline __attribute__((always_inline)) void decode_q45_K(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, kblock *b,
                                __m256i *F) {
    uint32_t u[4];
    k4_scales(scales, u);
    const uint8_t *sc = (const uint8_t *)u;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const __m256i h = qh ? loadu256(qh) : _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
        const __m256i q = loadu256(qs + 32 * c);
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c + 1), one), 4));
        }
        b->L[2 * c] = lo;
        b->L[2 * c + 1] = hi;
        b->S[2 * c] = _mm256_set1_epi16(sc[2 * c]);
        b->S[2 * c + 1] = _mm256_set1_epi16(sc[2 * c + 1]);
    }
    /* mins, each twice (sub-block k covers bsums 2k and 2k+1) */
    const __m128i mins8 = _mm_loadl_epi64((const __m128i *)(u + 2));
    *F = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(mins8, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)));
}

/* Q2_K: 16-element sub-blocks, 4-bit scales and mins */
static inline __attribute__((always_inline)) void decode_q2_K(const block_q2_K *x, kblock *b, __m256i *F) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m256i s16 = scales_even_odd_epu8(_mm_and_si128(sc8, _mm_set1_epi8(0x0F)));
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        const __m256i q = loadu256(x->qs + 32 * h);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            b->L[4 * h + k] = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
            b->S[4 * h + k] = scale_pair(s16, 4 * h + k);
        }
    }
    *F = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0F)));
}

/* Q3_K: levels + 4 in 0..7, scales - 32 as int8; the offset 4 * sum(scale * bsum) as factor pairs */
static inline __attribute__((always_inline)) void decode_q3_K(const block_q3_K *x, kblock *b, __m256i *F) {
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    const __m128i sc8 = q3_K_scales(x->scales);
    const __m256i s16 = scales_even_odd_epi8(sc8);
    const __m256i hm = loadu256(x->hmask);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        const __m256i q = loadu256(x->qs + 32 * h);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
            const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), one);
            b->L[4 * h + k] = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 2));
            b->S[4 * h + k] = scale_pair(s16, 4 * h + k);
        }
    }
    *F = _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 2);
}

/* Q6_K: levels + 32 in 0..63, int8 scales; the offset 32 * sum(scale * bsum) as factor pairs */
static inline __attribute__((always_inline)) void decode_q6_K(const block_q6_K *x, kblock *b, __m256i *F) {
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m256i s16 = scales_even_odd_epi8(sc8);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        q6_K_levels4(x->ql + 64 * h, x->qh + 32 * h, b->L + 4 * h);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            b->S[4 * h + k] = scale_pair(s16, 4 * h + k);
        }
    }
    *F = _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 5);
}

static inline __attribute__((always_inline)) void decode_iq4_xs(const block_iq4_xs *x, kblock *b) {
    const __m256i lut = iq4_lut();
    const uint16_t sh = x->scales_h;
#pragma GCC unroll 8
    for (int ib = 0; ib < 8; ++ib) {
        const int ls = (((x->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4)) - 32;
        const __m256i q = _mm256_shuffle_epi8(lut, nibbles32(x->qs + 16 * ib));
        b->Q[ib] = q;
        b->L[ib] = _mm256_sign_epi8(q, q);
        b->S[ib] = _mm256_set1_epi16((short)ls);
    }
}

/* ---------------------------------------------------------------- single-row sums
 * The same chunk products as the decoders above, formed chunk by chunk without holding the whole
 * decoded super-block (integer lanes: the order of the additions does not matter). */

static inline __attribute__((always_inline)) __m256i single_q45_K(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const int8_t *q8,
                                   __m256i *F) {
    uint32_t u[4];
    k4_scales(scales, u);
    const uint8_t *sc = (const uint8_t *)u;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const __m256i h = qh ? loadu256(qh) : _mm256_setzero_si256();
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
        const __m256i q = loadu256(qs + 32 * c);
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) {
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * c + 1), one), 4));
        }
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, loadu256(q8 + 64 * c)),
                                                        _mm256_set1_epi16(sc[2 * c])));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, loadu256(q8 + 64 * c + 32)),
                                                        _mm256_set1_epi16(sc[2 * c + 1])));
    }
    const __m128i mins8 = _mm_loadl_epi64((const __m128i *)(u + 2));
    *F = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(mins8, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)));
    return sumi;
}

static inline __attribute__((always_inline)) __m256i single_q2_K(const block_q2_K *x, const int8_t *q8, __m256i *F) {
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m256i s16 = scales_even_odd_epu8(_mm_and_si128(sc8, _mm_set1_epi8(0x0F)));
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        const __m256i q = loadu256(x->qs + 32 * h);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            const __m256i qk = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
            const __m256i p16 = _mm256_maddubs_epi16(qk, loadu256(q8 + 128 * h + 32 * k));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, scale_pair(s16, 4 * h + k)));
        }
    }
    *F = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0F)));
    return sumi;
}

static inline __attribute__((always_inline)) __m256i single_q3_K(const block_q3_K *x, const int8_t *q8, __m256i *F) {
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    const __m128i sc8 = q3_K_scales(x->scales);
    const __m256i s16 = scales_even_odd_epi8(sc8);
    const __m256i hm = loadu256(x->hmask);
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        const __m256i q = loadu256(x->qs + 32 * h);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
            const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), one);
            const __m256i qk = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 2));
            const __m256i p16 = _mm256_maddubs_epi16(qk, loadu256(q8 + 128 * h + 32 * k));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, scale_pair(s16, 4 * h + k)));
        }
    }
    *F = _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 2);
    return sumi;
}

static inline __attribute__((always_inline)) __m256i single_q6_K(const block_q6_K *x, const int8_t *q8, __m256i *F) {
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)x->scales);
    const __m256i s16 = scales_even_odd_epi8(sc8);
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
        __m256i q[4], p[4];
        q6_K_levels4(x->ql + 64 * h, x->qh + 32 * h, q);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            p[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], loadu256(q8 + 128 * h + 32 * k)), scale_pair(s16, 4 * h + k));
        }
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3])));
    }
    *F = _mm256_slli_epi16(_mm256_cvtepi8_epi16(sc8), 5);
    return sumi;
}

static inline __attribute__((always_inline)) __m256i single_iq4_xs(const block_iq4_xs *x, const int8_t *q8, __m256i *F) {
    const __m256i lut = iq4_lut();
    const uint16_t sh = x->scales_h;
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
        const int ls0 = ((x->scales_l[ib / 2] & 0xF) | (((sh >> (2 * ib)) & 3) << 4)) - 32;
        const int ls1 = ((x->scales_l[ib / 2] >> 4) | (((sh >> (2 * ib + 2)) & 3) << 4)) - 32;
        const __m256i q0 = _mm256_shuffle_epi8(lut, nibbles32(x->qs + 16 * ib));
        const __m256i q1 = _mm256_shuffle_epi8(lut, nibbles32(x->qs + 16 * ib + 16));
        const __m256i y0 = loadu256(q8 + 32 * ib), y1 = loadu256(q8 + 32 * ib + 32);
        const __m256i p0 = _mm256_maddubs_epi16(_mm256_sign_epi8(q0, q0), _mm256_sign_epi8(y0, q0));
        const __m256i p1 = _mm256_maddubs_epi16(_mm256_sign_epi8(q1, q1), _mm256_sign_epi8(y1, q1));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p0, _mm256_set1_epi16((short)ls0)));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, _mm256_set1_epi16((short)ls1)));
    }
    *F = _mm256_setzero_si256();
    return sumi;
}

#define SINGLE_Q4_K(x, q8, F) single_q45_K((x)->scales, (x)->qs, NULL, q8, F)
#define SINGLE_Q5_K(x, q8, F) single_q45_K((x)->scales, (x)->qs, (x)->qh, q8, F)

/* ---------------------------------------------------------------- kernels */

/* lane t = the sum of the eight lanes of a[t] */
static inline __attribute__((always_inline)) __m256i reduce8(const __m256i a[8]) {
    const __m256i b0 = _mm256_hadd_epi32(a[0], a[1]), b1 = _mm256_hadd_epi32(a[2], a[3]);
    const __m256i b2 = _mm256_hadd_epi32(a[4], a[5]), b3 = _mm256_hadd_epi32(a[6], a[7]);
    const __m256i c0 = _mm256_hadd_epi32(b0, b1), c1 = _mm256_hadd_epi32(b2, b3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(c0, c1, 0x20), _mm256_permute2x128_si256(c0, c1, 0x31));
}

/* the pair (tot, mt) of two super-blocks in h (after the two hadds: lanes 0..3 of each half), their
 * factors (dx dy, dmin dy, dx' dy', dmin' dy') in dv: added to s in super-block order */
static inline __attribute__((always_inline)) float kq_add_pair(float s, __m256i h, __m128 dv, int mins) {
    const __m128i r = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    float v[4];
    _mm_storeu_ps(v, _mm_mul_ps(dv, _mm_cvtepi32_ps(r)));
    s = s + v[0];
    if (mins) {
        s = s - v[1];
    }
    s = s + v[2];
    if (mins) {
        s = s - v[3];
    }
    return s;
}

/* The reduced form (Q4_K, Q6_K: the cheaper eight-token kernel): per super-block and token the
 * exact integer totals tot and mt, then s = s + (dx * dy) * tot, s = s - (dmin * dy) * mt, one token
 * per lane in the eight-token kernel. MINS: 1 for Q4_K (F holds the mins), 0 for Q6_K (F holds the
 * offset factors, subtracted lane for lane); SGN: the sign trick (unused here). */
#define KQ_KERNELS_REDUCED(name, btype, SINGLE, DECODE, MINS, OFFSET, SGN, DMIN, PAIRED)                \
    void qtk_vec_dot_##name##_q8_K_avx2(int64_t n, float *s, const void *vx, const void *vy) {           \
        const btype *x = vx;                                                                            \
        const block_q8_K *y = vy;                                                                       \
        const int64_t nb = n / QK_K;                                                                    \
        float sum = 0.0f;                                                                               \
        /* two super-blocks per reduction, and the pair before is reduced and added while the next is \
         * computed (the horizontal sums would otherwise hold it up); additions stay in order. Q6_K  \
         * (PAIRED 0) runs one super-block at a time: two of its decodes at once spill. */          \
        __m256i h = _mm256_setzero_si256();                                                             \
        __m128 dv = _mm_setzero_ps();                                                                   \
        int pending = 0;                                                                                \
        int64_t i = 0;                                                                                  \
        for (; PAIRED && i + 2 <= nb; i += 2) {                                                         \
            __m256i F0, F1;                                                                             \
            __m256i s0 = SINGLE(&x[i], y[i].qs, &F0), s1 = SINGLE(&x[i + 1], y[i + 1].qs, &F1);         \
            const __m256i m0 = bsums_f(y[i].bsums, F0), m1 = bsums_f(y[i + 1].bsums, F1);               \
            if (OFFSET) {                                                                               \
                s0 = _mm256_sub_epi32(s0, m0);                                                          \
                s1 = _mm256_sub_epi32(s1, m1);                                                          \
            }                                                                                           \
            if (pending) {                                                                              \
                sum = kq_add_pair(sum, h, dv, MINS);                                                    \
            }                                                                                           \
            h = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, m0), _mm256_hadd_epi32(s1, m1));                \
            const float dy0 = y[i].d, dy1 = y[i + 1].d;                                                 \
            dv = _mm_setr_ps(qtk_h2f(x[i].d) * dy0, DMIN(&x[i]) * dy0, qtk_h2f(x[i + 1].d) * dy1,       \
                             DMIN(&x[i + 1]) * dy1);                                                    \
            pending = 1;                                                                                \
        }                                                                                               \
        if (pending) {                                                                                  \
            sum = kq_add_pair(sum, h, dv, MINS);                                                        \
        }                                                                                               \
        for (; i < nb; ++i) {                                                                           \
            __m256i F;                                                                                  \
            __m256i sumi = SINGLE(&x[i], y[i].qs, &F);                                                  \
            const __m256i m = bsums_f(y[i].bsums, F);                                                   \
            if (OFFSET) {                                                                               \
                sumi = _mm256_sub_epi32(sumi, m);                                                       \
            }                                                                                           \
            const __m256i hh = _mm256_hadd_epi32(sumi, m);                                              \
            __m128i r = _mm_add_epi32(_mm256_castsi256_si128(hh), _mm256_extracti128_si256(hh, 1));     \
            r = _mm_hadd_epi32(r, r);                                                                   \
            const float dy = y[i].d;                                                                    \
            sum = sum + (qtk_h2f(x[i].d) * dy) * (float)_mm_cvtsi128_si32(r);                           \
            if (MINS) {                                                                                 \
                sum = sum - (DMIN(&x[i]) * dy) * (float)_mm_extract_epi32(r, 1);                        \
            }                                                                                           \
        }                                                                                               \
        *s = sum;                                                                                       \
    }                                                                                                   \
    void qtk_vec_dot8_##name##_q8_K_avx2(int64_t n, float *s, const void *vx, const qtk_q8k_group *g) { \
        const btype *x = vx;                                                                            \
        const block_q8_K *y[8];                                                                         \
        for (int t = 0; t < 8; ++t) {                                                                   \
            y[t] = g->y[t];                                                                             \
        }                                                                                               \
        __m256 sum = _mm256_setzero_ps();                                                               \
        for (int64_t i = 0; i < n / QK_K; ++i) {                                                        \
            kblock b;                                                                                   \
            __m256i F, sumi[8], m[8];                                                                   \
            DECODE(&x[i], &b, &F);                                                                      \
            group_sumi(&b, y, i, SGN, sumi);                                                            \
            for (int t = 0; t < 8; ++t) {                                                               \
                if (OFFSET) {                                                                           \
                    sumi[t] = _mm256_sub_epi32(sumi[t], bsums_f(y[t][i].bsums, F));                     \
                }                                                                                       \
                if (MINS) {                                                                             \
                    m[t] = bsums_f(y[t][i].bsums, F);                                                   \
                }                                                                                       \
            }                                                                                           \
            const __m256 dy = _mm256_setr_ps(y[0][i].d, y[1][i].d, y[2][i].d, y[3][i].d, y[4][i].d,     \
                                             y[5][i].d, y[6][i].d, y[7][i].d);                          \
            sum = _mm256_add_ps(sum, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(qtk_h2f(x[i].d)), dy),  \
                                                   _mm256_cvtepi32_ps(reduce8(sumi))));                 \
            if (MINS) {                                                                                 \
                sum = _mm256_sub_ps(sum, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(DMIN(&x[i])), dy),  \
                                                       _mm256_cvtepi32_ps(reduce8(m))));                \
            }                                                                                           \
        }                                                                                               \
        _mm256_storeu_ps(s, sum);                                                                       \
    }

/* ---------------------------------------------------------------- the unpacked prompt path
 * A super-block unpacked once per row (QTK_UNPACKED_BYTES): the 256 levels as bytes, the eight
 * chunks' scale vectors, the offset factors (Q3_K, Q6_K) and mins factors (Q2_K, Q4_K, Q5_K) per
 * 16-element bsum, d and dmin. The eight-token kernel then only loads: per 32 weights and token a
 * vpmaddubsw, vpmaddwd and vpaddd; same integers and float chain as the single-row kernel. */
#define KU_L 0
#define KU_S 256
#define KU_F 512
#define KU_M 544
#define KU_D 576
#define KU_DMIN 580

#define KQ_UNPACKED(name, btype, DECODE, MINS, OFFSET, DMIN)                                            \
    void qtk_unpack_##name##_avx2(const void *vx, int64_t n, uint8_t *u) {                              \
        const btype *x = vx;                                                                            \
        for (int64_t i = 0; i < n / QK_K; ++i, u += QTK_UNPACKED_BYTES) {                               \
            kblock b;                                                                                   \
            __m256i F;                                                                                  \
            DECODE(&x[i], &b, &F);                                                                      \
            for (int j = 0; j < 8; ++j) {                                                               \
                _mm256_storeu_si256((__m256i *)(u + KU_L + 32 * j), b.L[j]);                            \
                _mm256_storeu_si256((__m256i *)(u + KU_S + 32 * j), b.S[j]);                            \
            }                                                                                           \
            _mm256_storeu_si256((__m256i *)(u + KU_F), OFFSET ? F : _mm256_setzero_si256());           \
            _mm256_storeu_si256((__m256i *)(u + KU_M), MINS ? F : _mm256_setzero_si256());             \
            const float d = qtk_h2f(x[i].d), dmin = DMIN(&x[i]);                                        \
            memcpy(u + KU_D, &d, 4);                                                                    \
            memcpy(u + KU_DMIN, &dmin, 4);                                                              \
        }                                                                                               \
    }                                                                                                   \
    void qtk_vec_dot8u_##name##_q8_K_avx2(int64_t n, float *s, const void *u, const qtk_q8k_group *g) { \
        kq_dot8u(n, s, u, g, MINS, OFFSET);                                                             \
    }

static inline __attribute__((always_inline)) void kq_dot8u(int64_t n, float *s, const void *vu, const qtk_q8k_group *g,
                                                          int mins, int offset) {
    const uint8_t *u = vu;
    const block_q8_K *y[8];
    for (int t = 0; t < 8; ++t) {
        y[t] = g->y[t];
    }
    __m256 sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; ++i, u += QTK_UNPACKED_BYTES) {
        __m256i acc[8];
#pragma GCC unroll 8
        for (int t = 0; t < 8; ++t) {
            acc[t] = _mm256_setzero_si256();
        }
#pragma GCC unroll 1
        for (int j = 0; j < 8; ++j) {
            const __m256i L = loadu256(u + KU_L + 32 * j), S = loadu256(u + KU_S + 32 * j);
#pragma GCC unroll 8
            for (int t = 0; t < 8; ++t) {
                acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(_mm256_maddubs_epi16(L, loadu256(y[t][i].qs + 32 * j)), S));
            }
        }
        if (offset) {
            const __m256i F = loadu256(u + KU_F);
#pragma GCC unroll 8
            for (int t = 0; t < 8; ++t) {
                acc[t] = _mm256_sub_epi32(acc[t], _mm256_madd_epi16(loadu256(y[t][i].bsums), F));
            }
        }
        float d, dmin;
        memcpy(&d, u + KU_D, 4);
        memcpy(&dmin, u + KU_DMIN, 4);
        const __m256 dy = _mm256_setr_ps(y[0][i].d, y[1][i].d, y[2][i].d, y[3][i].d, y[4][i].d, y[5][i].d, y[6][i].d,
                                         y[7][i].d);
        sum = _mm256_add_ps(sum, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(d), dy), _mm256_cvtepi32_ps(reduce8(acc))));
        if (mins) {
            const __m256i M = loadu256(u + KU_M);
            __m256i m[8];
#pragma GCC unroll 8
            for (int t = 0; t < 8; ++t) {
                m[t] = _mm256_madd_epi16(loadu256(y[t][i].bsums), M);
            }
            sum = _mm256_sub_ps(sum, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dmin), dy), _mm256_cvtepi32_ps(reduce8(m))));
        }
    }
    _mm256_storeu_ps(s, sum);
}

#define DECODE_Q4_K(x, b, F) decode_q45_K((x)->scales, (x)->qs, NULL, b, F)
#define DECODE_Q5_K(x, b, F) decode_q45_K((x)->scales, (x)->qs, (x)->qh, b, F)
#define DECODE_IQ4_XS(x, b, F) (decode_iq4_xs(x, b), *(F) = _mm256_setzero_si256())
#define DMIN_HALF(x) qtk_h2f((x)->dmin)
#define DMIN_NONE(x) 0.0f

KQ_KERNELS_REDUCED(q4_K, block_q4_K, SINGLE_Q4_K, DECODE_Q4_K, 1, 0, 0, DMIN_HALF, 1)
KQ_KERNELS_REDUCED(q5_K, block_q5_K, SINGLE_Q5_K, DECODE_Q5_K, 1, 0, 0, DMIN_HALF, 1)
KQ_KERNELS_REDUCED(q2_K, block_q2_K, single_q2_K, decode_q2_K, 1, 0, 0, DMIN_HALF, 1)
KQ_KERNELS_REDUCED(q3_K, block_q3_K, single_q3_K, decode_q3_K, 0, 1, 0, DMIN_NONE, 1)
KQ_KERNELS_REDUCED(q6_K, block_q6_K, single_q6_K, decode_q6_K, 0, 1, 0, DMIN_NONE, 0)
KQ_KERNELS_REDUCED(iq4_xs, block_iq4_xs, single_iq4_xs, DECODE_IQ4_XS, 0, 0, 1, DMIN_NONE, 1)

/* IQ4_XS keeps its eight-token kernel: its signed levels plus a bias would overflow vpmaddubsw */
KQ_UNPACKED(q4_K, block_q4_K, DECODE_Q4_K, 1, 0, DMIN_HALF)
KQ_UNPACKED(q5_K, block_q5_K, DECODE_Q5_K, 1, 0, DMIN_HALF)
KQ_UNPACKED(q2_K, block_q2_K, decode_q2_K, 1, 0, DMIN_HALF)
KQ_UNPACKED(q3_K, block_q3_K, decode_q3_K, 0, 1, DMIN_NONE)
KQ_UNPACKED(q6_K, block_q6_K, decode_q6_K, 0, 1, DMIN_NONE)

#include "arch/x86/avx2_end.h"

#endif
