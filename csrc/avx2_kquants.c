/* AVX2 dot kernels of the Q8_K-paired K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS: one weight
 * row against one activation row (gemv), and one weight row against eight activation rows (the
 * gemm micro-kernel: each weight super-block is decoded once for eight tokens, the tokens'
 * per-super-block sums are reduced together into one vector, and the min / offset terms and the
 * float scaling run with one token per lane).
 *
 * Both forms compute, per super-block, the same two exact integers per token: `tot`, the sum of
 * level x activation x sub-block scale (less the offset term of the types with signed levels
 * stored unsigned), and `mt`, the mins term of Q2_K / Q4_K / Q5_K. The float work is then the same
 * scalar chain in both: s = s + (dx * dy) * tot, then s = s - (dmin * dy) * mt, super-block by
 * super-block (a multiply, a multiply, an add: never fused). So lane t of the eight-token kernel
 * has exactly the bits of the single-row kernel on token t, whatever tokens share the call.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "simd_avx2.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#include "common.h"
#include "simd_x86.h"

/* ---------------------------------------------------------------- helpers */

/* lane t = the sum of the eight lanes of a[t] */
static inline __m256i reduce8(const __m256i a[8]) {
    const __m256i b0 = _mm256_hadd_epi32(a[0], a[1]), b1 = _mm256_hadd_epi32(a[2], a[3]);
    const __m256i b2 = _mm256_hadd_epi32(a[4], a[5]), b3 = _mm256_hadd_epi32(a[6], a[7]);
    const __m256i c0 = _mm256_hadd_epi32(b0, b1), c1 = _mm256_hadd_epi32(b2, b3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(c0, c1, 0x20), _mm256_permute2x128_si256(c0, c1, 0x31));
}

/* The decoded super-block: for each 32-element chunk j, the level bytes L[j] and the int16 scales
 * S[j] (one per 16-element half); `sgn` types (IQ4_XS) hold |level| in L[j] and the signed levels
 * in Q[j]. */
typedef struct {
    __m256i L[8], S[8], Q[8];
} kblock;

static inline __m256i chunk_dot(const kblock *b, int j, const int8_t *q8, int sgn) {
    const __m256i y = loadu256(q8 + 32 * j);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(b->L[j], sgn ? _mm256_sign_epi8(y, b->Q[j]) : y), b->S[j]);
}

static inline int single_tot(const kblock *b, const int8_t *q8, int sgn) {
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
        acc = _mm256_add_epi32(acc, chunk_dot(b, j, q8, sgn));
    }
    return hsum_i32x8(acc);
}

static inline __m256i group_tot(const kblock *b, const block_q8_K *const y[8], int64_t i, int sgn) {
    __m256i acc[8];
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) {
        acc[t] = _mm256_setzero_si256();
    }
    /* the chunk loop stays rolled for the plain types (fully unrolled, gcc schedules all 64
     * products first and spills them); the sign-trick type runs faster unrolled */
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
    return reduce8(acc);
}

/* Sum over the eight bsum pairs k of f[k] . (bsums[2k], bsums[2k+1]): per token from the group's
 * side data (lane t), or for one row. f[k] packs two int16 factors. */
static inline __m256i group_bsums(const int16_t *bs, const uint32_t f[8]) {
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(loadu256(bs + 16 * k), _mm256_set1_epi32((int)f[k])));
    }
    return acc;
}

static inline int single_bsums(const int16_t *bsums, const uint32_t f[8]) {
    const __m256i fv = _mm256_loadu_si256((const __m256i *)f);
    return hsum_i32x8(_mm256_madd_epi16(loadu256(bsums), fv));
}

static inline uint32_t pack16(int a, int b) {
    return (uint32_t)(uint16_t)a | ((uint32_t)(uint16_t)b << 16);
}

/* ---------------------------------------------------------------- decoders */

/* Q4_K / Q5_K: 32-element sub-blocks, 6-bit scales and mins; mins as factor pairs (m, m) */
static inline void decode_q45_K(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, kblock *b,
                                uint32_t mf[8]) {
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
    for (int k = 0; k < 8; ++k) {
        mf[k] = pack16(sc[8 + k], sc[8 + k]);
    }
}

/* Q2_K: 16-element sub-blocks, 4-bit scales and mins */
static inline void decode_q2_K(const block_q2_K *x, kblock *b, uint32_t mf[8]) {
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
    for (int k = 0; k < 8; ++k) {
        mf[k] = pack16(x->scales[2 * k] >> 4, x->scales[2 * k + 1] >> 4);
    }
}

/* Q3_K: levels + 4 in 0..7, scales - 32 as int8; the offset 4 * sum(scale * bsum) as factor pairs */
static inline void decode_q3_K(const block_q3_K *x, kblock *b, uint32_t cf[8]) {
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
    int8_t sc[16];
    _mm_storeu_si128((__m128i *)sc, sc8);
    for (int k = 0; k < 8; ++k) {
        cf[k] = pack16(4 * sc[2 * k], 4 * sc[2 * k + 1]);
    }
}

/* Q6_K: levels + 32 in 0..63, int8 scales; the offset 32 * sum(scale * bsum) as factor pairs */
static inline void decode_q6_K(const block_q6_K *x, kblock *b, uint32_t cf[8]) {
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
    for (int k = 0; k < 8; ++k) {
        cf[k] = pack16(32 * x->scales[2 * k], 32 * x->scales[2 * k + 1]);
    }
}

static inline void decode_iq4_xs(const block_iq4_xs *x, kblock *b) {
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

/* ---------------------------------------------------------------- kernels */

/* the float chain of one super-block for one token, and for eight tokens in lanes */
static inline float step1(float s, float dx, float dmin, float dy, int tot, int mt) {
    s = s + (dx * dy) * (float)tot;
    return s - (dmin * dy) * (float)mt;
}

static inline __m256 step8(__m256 s, float dx, float dmin, const float *dy, __m256i tot, __m256i mt) {
    const __m256 vdy = _mm256_loadu_ps(dy);
    s = _mm256_add_ps(s, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dx), vdy), _mm256_cvtepi32_ps(tot)));
    return _mm256_sub_ps(s, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dmin), vdy), _mm256_cvtepi32_ps(mt)));
}

static inline float step1_nomin(float s, float dx, float dy, int tot) {
    return s + (dx * dy) * (float)tot;
}

static inline __m256 step8_nomin(__m256 s, float dx, const float *dy, __m256i tot) {
    return _mm256_add_ps(s, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(dx), _mm256_loadu_ps(dy)), _mm256_cvtepi32_ps(tot)));
}

#define GROUP_Y(g)                                                                                       \
    const block_q8_K *y[8];                                                                              \
    for (int t = 0; t < 8; ++t) {                                                                        \
        y[t] = (g)->y[t];                                                                                \
    }

/* Q4_K, Q5_K, Q2_K: tot and mins */
#define KQ_MIN_KERNELS(name, btype, DECODE)                                                             \
    void qtk_vec_dot_##name##_q8_K_avx2(int64_t n, float *s, const void *vx, const void *vy) {           \
        const btype *x = vx;                                                                            \
        const block_q8_K *y = vy;                                                                       \
        float sum = 0.0f;                                                                               \
        for (int64_t i = 0; i < n / QK_K; ++i) {                                                        \
            kblock b;                                                                                   \
            uint32_t mf[8];                                                                             \
            DECODE(&x[i], &b, mf);                                                                      \
            const int tot = single_tot(&b, y[i].qs, 0), mt = single_bsums(y[i].bsums, mf);             \
            sum = step1(sum, qtk_h2f(x[i].d), qtk_h2f(x[i].dmin), y[i].d, tot, mt);                     \
        }                                                                                               \
        *s = sum;                                                                                       \
    }                                                                                                   \
    void qtk_vec_dot8_##name##_q8_K_avx2(int64_t n, float *s, const void *vx, const qtk_q8k_group *g) { \
        const btype *x = vx;                                                                            \
        GROUP_Y(g)                                                                                      \
        __m256 sum = _mm256_setzero_ps();                                                               \
        for (int64_t i = 0; i < n / QK_K; ++i) {                                                        \
            kblock b;                                                                                   \
            uint32_t mf[8];                                                                             \
            DECODE(&x[i], &b, mf);                                                                      \
            const __m256i tot = group_tot(&b, y, i, 0), mt = group_bsums(g->bs + 128 * i, mf);          \
            sum = step8(sum, qtk_h2f(x[i].d), qtk_h2f(x[i].dmin), g->dy + 8 * i, tot, mt);              \
        }                                                                                               \
        _mm256_storeu_ps(s, sum);                                                                       \
    }

/* Q3_K, Q6_K: tot less the offset term */
#define KQ_OFF_KERNELS(name, btype, DECODE)                                                             \
    void qtk_vec_dot_##name##_q8_K_avx2(int64_t n, float *s, const void *vx, const void *vy) {           \
        const btype *x = vx;                                                                            \
        const block_q8_K *y = vy;                                                                       \
        float sum = 0.0f;                                                                               \
        for (int64_t i = 0; i < n / QK_K; ++i) {                                                        \
            kblock b;                                                                                   \
            uint32_t cf[8];                                                                             \
            DECODE(&x[i], &b, cf);                                                                      \
            const int tot = single_tot(&b, y[i].qs, 0) - single_bsums(y[i].bsums, cf);                 \
            sum = step1_nomin(sum, qtk_h2f(x[i].d), y[i].d, tot);                                       \
        }                                                                                               \
        *s = sum;                                                                                       \
    }                                                                                                   \
    void qtk_vec_dot8_##name##_q8_K_avx2(int64_t n, float *s, const void *vx, const qtk_q8k_group *g) { \
        const btype *x = vx;                                                                            \
        GROUP_Y(g)                                                                                      \
        __m256 sum = _mm256_setzero_ps();                                                               \
        for (int64_t i = 0; i < n / QK_K; ++i) {                                                        \
            kblock b;                                                                                   \
            uint32_t cf[8];                                                                             \
            DECODE(&x[i], &b, cf);                                                                      \
            const __m256i tot = _mm256_sub_epi32(group_tot(&b, y, i, 0), group_bsums(g->bs + 128 * i, cf)); \
            sum = step8_nomin(sum, qtk_h2f(x[i].d), g->dy + 8 * i, tot);                                \
        }                                                                                               \
        _mm256_storeu_ps(s, sum);                                                                       \
    }

#define DECODE_Q4_K(x, b, mf) decode_q45_K((x)->scales, (x)->qs, NULL, b, mf)
#define DECODE_Q5_K(x, b, mf) decode_q45_K((x)->scales, (x)->qs, (x)->qh, b, mf)

KQ_MIN_KERNELS(q4_K, block_q4_K, DECODE_Q4_K)
KQ_MIN_KERNELS(q5_K, block_q5_K, DECODE_Q5_K)
KQ_MIN_KERNELS(q2_K, block_q2_K, decode_q2_K)
KQ_OFF_KERNELS(q3_K, block_q3_K, decode_q3_K)
KQ_OFF_KERNELS(q6_K, block_q6_K, decode_q6_K)

void qtk_vec_dot_iq4_xs_q8_K_avx2(int64_t n, float *s, const void *vx, const void *vy) {
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        kblock b;
        decode_iq4_xs(&x[i], &b);
        sum = step1_nomin(sum, qtk_h2f(x[i].d), y[i].d, single_tot(&b, y[i].qs, 1));
    }
    *s = sum;
}

void qtk_vec_dot8_iq4_xs_q8_K_avx2(int64_t n, float *s, const void *vx, const qtk_q8k_group *g) {
    const block_iq4_xs *x = vx;
    GROUP_Y(g)
    __m256 sum = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK_K; ++i) {
        kblock b;
        decode_iq4_xs(&x[i], &b);
        sum = step8_nomin(sum, qtk_h2f(x[i].d), g->dy + 8 * i, group_tot(&b, y, i, 1));
    }
    _mm256_storeu_ps(s, sum);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif
