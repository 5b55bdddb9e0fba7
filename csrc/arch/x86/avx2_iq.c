/* AVX2 kernels of the codebook formats IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M:
 * dot products with a Q8_K activation row (single row and four rows), and dequantizers.
 *
 * Dot products: per 32 elements, the grid entries of the group indices are gathered into one
 * 32-byte vector (scalar table loads), the signs are applied to the activation bytes
 * (_mm256_sign_epi8 with a +-1 byte per element), and vpmaddubsw / vpmaddwd form the exact integer
 * sums, weighted by the odd integer sub-block scales as in dot_iq_ref.c. IQ1: the grid value g and
 * the shift +-1/8 are folded into one integer 8g +- 1 per element, so one dot gives
 * 8 * (grid part) + (delta part) exactly. Only the float accumulation over super-blocks differs
 * from the reference (held to the normalised error bound).
 *
 * Dequantizers give exactly the reference's bits: the same float operations per element in the
 * same order (the scale products in scalar code as in ref_iq*.c, then db * v, then the sign as a negation).
 */
#if defined(__x86_64__) || defined(__i386__)

#include "arch/x86/simd_avx2.h"

#include "arch/x86/avx2_begin.h"

#include "arch/x86/simd_x86.h"
#include "ref/common.h"
#include "ref/iq_grids.h"

/* ---------------------------------------------------------------- helpers */

/* The 7-bit sign indices of IQ2_XXS, IQ2_XS and IQ3_XXS as eight +-1 bytes: entry s has byte j = -1
 * where bit j of qtk_ksigns_iq2xs[s] is set (bit j of s for j < 7; bit 7, the parity of s), else 1.
 * A constant expression of s, so the table is built by the compiler. */
#define KS_B(s, j) ((((s) >> (j)) & 1) ? 0xFFull : 0x01ull)
#define KS_PAR(s) (((s) ^ ((s) >> 1) ^ ((s) >> 2) ^ ((s) >> 3) ^ ((s) >> 4) ^ ((s) >> 5) ^ ((s) >> 6)) & 1)
#define KS_E(s)                                                                                          \
    (KS_B(s, 0) | KS_B(s, 1) << 8 | KS_B(s, 2) << 16 | KS_B(s, 3) << 24 | KS_B(s, 4) << 32 | KS_B(s, 5) << 40 | \
     KS_B(s, 6) << 48 | (KS_PAR(s) ? 0xFFull : 0x01ull) << 56)
#define KS_8(b) KS_E(b), KS_E(b + 1), KS_E(b + 2), KS_E(b + 3), KS_E(b + 4), KS_E(b + 5), KS_E(b + 6), KS_E(b + 7)
static const uint64_t ksigns64[128] = {KS_8(0),  KS_8(8),  KS_8(16), KS_8(24), KS_8(32),  KS_8(40),
                                       KS_8(48), KS_8(56), KS_8(64), KS_8(72), KS_8(80),  KS_8(88),
                                       KS_8(96), KS_8(104), KS_8(112), KS_8(120)};

/* +-1 bytes of four 7-bit sign indices */
static inline __attribute__((always_inline)) __m256i ksigns4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    return _mm256_set_epi64x((long long)ksigns64[d & 127], (long long)ksigns64[c & 127], (long long)ksigns64[b & 127],
                             (long long)ksigns64[a & 127]);
}

/* +-1 bytes from 32 sign bits (bit j set: byte j is -1) */
static inline __attribute__((always_inline)) __m256i sign_bits(uint32_t bits) {
    return _mm256_or_si256(bits32_to_mask(bits), _mm256_set1_epi8(1));
}

static inline __attribute__((always_inline)) __m256i grid8x4(const uint64_t *grid, int a, int b, int c, int d) {
    return _mm256_set_epi64x((long long)grid[d], (long long)grid[c], (long long)grid[b], (long long)grid[a]);
}

static inline __attribute__((always_inline)) __m256i grid4x8(const uint32_t *grid, int k0, int k1, int k2, int k3, int k4, int k5, int k6, int k7) {
    return _mm256_set_epi32((int)grid[k7], (int)grid[k6], (int)grid[k5], (int)grid[k4], (int)grid[k3], (int)grid[k2],
                            (int)grid[k1], (int)grid[k0]);
}

static inline __attribute__((always_inline)) uint32_t u16pair(const uint16_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 16);
}

/* The decoded form of one 32-element group of any IQ type: unsigned grid bytes `g` (IQ2/IQ3) with
 * +-1 sign bytes `sg`, or signed values `g` (IQ1: 8g +- 1); and the int16 scale per half. */
typedef struct {
    __m256i g;
    __m256i sg;
    __m256i sc;
} iq_group;

/* ---------------------------------------------------------------- group decoders */

static inline __attribute__((always_inline)) void iq2_xxs_group(const block_iq2_xxs *b, int ib, __m256i s16, iq_group *o) {
    (void)s16;
    const uint32_t idx = u16pair(b->qs + 4 * ib), aux = u16pair(b->qs + 4 * ib + 2);
    o->g = grid8x4(qtk_iq2xxs_grid, idx & 255, (idx >> 8) & 255, (idx >> 16) & 255, idx >> 24);
    o->sg = ksigns4(aux, aux >> 7, aux >> 14, aux >> 21);
    o->sc = _mm256_set1_epi16((short)(2 * (aux >> 28) + 1));
}

/* IQ2_XS / IQ2_S: the 16 odd sub-block scales 2s + 1 of a super-block as int16, even sub-blocks in
 * the low 128 bits and odd ones in the high 128 bits (scale_pair picks group ib's two) */
static inline __attribute__((always_inline)) __m256i iq2_scales16(const uint8_t *scales) {
    const __m128i sc8 = _mm_loadl_epi64((const __m128i *)scales);
    const __m128i lo = _mm_and_si128(sc8, _mm_set1_epi8(0x0F)), hi = _mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0F));
    const __m128i s = _mm_add_epi8(_mm_add_epi8(_mm_unpacklo_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi)), _mm_set1_epi8(1));
    return scales_even_odd_epu8(s);
}

static inline __attribute__((always_inline)) void iq2_xs_group(const block_iq2_xs *b, int ib, __m256i s16, iq_group *o) {
    const uint16_t *q = b->qs + 4 * ib;
    o->g = grid8x4(qtk_iq2xs_grid, q[0] & 511, q[1] & 511, q[2] & 511, q[3] & 511);
    o->sg = ksigns4(q[0] >> 9, q[1] >> 9, q[2] >> 9, q[3] >> 9);
    o->sc = scale_pair(s16, ib);
}

static inline __attribute__((always_inline)) void iq2_s_group(const block_iq2_s *b, int ib, __m256i s16, iq_group *o) {
    const uint8_t *qs = b->qs + 4 * ib;
    const int qh = b->qh[ib];
    o->g = grid8x4(qtk_iq2s_grid, qs[0] | ((qh << 8) & 0x300), qs[1] | ((qh << 6) & 0x300),
                   qs[2] | ((qh << 4) & 0x300), qs[3] | ((qh << 2) & 0x300));
    o->sg = sign_bits(rd_u32(b->qs + QK_K / 8 + 4 * ib));
    o->sc = scale_pair(s16, ib);
}

static inline __attribute__((always_inline)) void iq3_xxs_group(const block_iq3_xxs *b, int ib, __m256i s16, iq_group *o) {
    (void)s16;
    const uint8_t *qs = b->qs + 8 * ib;
    const uint32_t aux = rd_u32(b->qs + QK_K / 4 + 4 * ib);
    o->g = grid4x8(qtk_iq3xxs_grid, qs[0], qs[1], qs[2], qs[3], qs[4], qs[5], qs[6], qs[7]);
    o->sg = ksigns4(aux, aux >> 7, aux >> 14, aux >> 21);
    o->sc = _mm256_set1_epi16((short)(2 * (aux >> 28) + 1));
}

static inline __attribute__((always_inline)) void iq3_s_group(const block_iq3_s *b, int ib, __m256i s16, iq_group *o) {
    (void)s16;
    const uint8_t *qs = b->qs + 8 * ib;
    const int qh = b->qh[ib];
    o->g = grid4x8(qtk_iq3s_grid, qs[0] | ((qh << 8) & 256), qs[1] | ((qh << 7) & 256), qs[2] | ((qh << 6) & 256),
                   qs[3] | ((qh << 5) & 256), qs[4] | ((qh << 4) & 256), qs[5] | ((qh << 3) & 256),
                   qs[6] | ((qh << 2) & 256), qs[7] | ((qh << 1) & 256));
    o->sg = sign_bits(rd_u32(b->signs + 4 * ib));
    o->sc = _mm256_set1_epi16((short)(2 * ((b->scales[ib / 2] >> (4 * (ib % 2))) & 0xF) + 1));
}

/* IQ1: 8 g + s per element, s = +-1 per group of 8 (the delta sign) */
static inline __attribute__((always_inline)) __m256i iq1_values(__m256i g, __m256i s) {
    return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), g), s);
}

static inline __attribute__((always_inline)) __m256i iq1_delta8(int neg0, int neg1, int neg2, int neg3) {
    const long long p = 0x0101010101010101LL, m = -1LL;
    return _mm256_set_epi64x(neg3 ? m : p, neg2 ? m : p, neg1 ? m : p, neg0 ? m : p);
}

static inline __attribute__((always_inline)) void iq1_s_group(const block_iq1_s *b, int ib, __m256i s16, iq_group *o) {
    (void)s16;
    const uint8_t *qs = b->qs + 4 * ib;
    const int qh = b->qh[ib];
    const __m256i g = grid8x4(qtk_iq1s_grid, qs[0] | ((qh << 8) & 0x700), qs[1] | ((qh << 5) & 0x700),
                              qs[2] | ((qh << 2) & 0x700), qs[3] | ((qh >> 1) & 0x700));
    const int neg = (qh & 0x8000) != 0;
    o->g = iq1_values(g, iq1_delta8(neg, neg, neg, neg));
    o->sc = _mm256_set1_epi16((short)(2 * ((qh >> 12) & 7) + 1));
}

static inline __attribute__((always_inline)) uint16_t iq1_m_scales_word(const block_iq1_m *b, int w) {
    return (uint16_t)(b->scales[2 * w] | (b->scales[2 * w + 1] << 8));
}

/* IQ1_M: the 16 odd sub-block scales 2s + 1 (3 bits each, four per 16-bit word) as int16, even
 * sub-blocks in the low 128 bits and odd ones in the high 128 bits */
static inline __attribute__((always_inline)) __m256i iq1_m_scales16(const block_iq1_m *b) {
    const __m128i w = _mm_loadl_epi64((const __m128i *)b->scales);
    const __m256i shifts = _mm256_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9), seven = _mm256_set1_epi32(7);
    const __m256i a = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_cvtepu16_epi32(_mm_shuffle_epi8(w, _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3))),
                          shifts),
        seven);
    const __m256i c = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_cvtepu16_epi32(_mm_shuffle_epi8(w, _mm_setr_epi8(4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7))),
                          shifts),
        seven);
    /* int16 in sub-block order, then bytes 2s + 1 */
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, c), 0xD8);
    __m128i v8 = _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    v8 = _mm_add_epi8(_mm_add_epi8(v8, v8), _mm_set1_epi8(1));
    return scales_even_odd_epu8(v8);
}

/* +-1 bytes per group of 8: -1 where the group's delta sign bit is set (bits 3 and 7 of h0, h1) */
static inline __attribute__((always_inline)) __m256i iq1_m_delta(int h0, int h1) {
    const __m256i v = _mm256_set1_epi16((short)(h0 | (h1 << 8)));
    const __m256i sel = _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1,
                                                                1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1));
    const __m256i m = _mm256_setr_epi8(8, 8, 8, 8, 8, 8, 8, 8, (char)0x80, (char)0x80, (char)0x80, (char)0x80, (char)0x80,
                                       (char)0x80, (char)0x80, (char)0x80, 8, 8, 8, 8, 8, 8, 8, 8, (char)0x80, (char)0x80,
                                       (char)0x80, (char)0x80, (char)0x80, (char)0x80, (char)0x80, (char)0x80);
    return _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_and_si256(sel, m), m), _mm256_set1_epi8(1));
}

/* 32 elements = 16-element sub-blocks 2 ib and 2 ib + 1 */
static inline __attribute__((always_inline)) void iq1_m_group(const block_iq1_m *b, int ib, __m256i s16, iq_group *o) {
    const uint8_t *qs = b->qs + 4 * ib;
    const int h0 = b->qh[2 * ib], h1 = b->qh[2 * ib + 1];
    const __m256i g = grid8x4(qtk_iq1s_grid, qs[0] | ((h0 << 8) & 0x700), qs[1] | ((h0 << 4) & 0x700),
                              qs[2] | ((h1 << 8) & 0x700), qs[3] | ((h1 << 4) & 0x700));
    o->g = iq1_values(g, iq1_m_delta(h0, h1));
    o->sc = scale_pair(s16, ib);
}

static inline __attribute__((always_inline)) float iq1_m_d(const block_iq1_m *b) {
    const uint16_t h = (uint16_t)((iq1_m_scales_word(b, 0) >> 12) | ((iq1_m_scales_word(b, 1) >> 8) & 0x00f0) |
                                  ((iq1_m_scales_word(b, 2) >> 4) & 0x0f00) | (iq1_m_scales_word(b, 3) & 0xf000));
    return qtk_h2f(h);
}

/* scaled integer sum of one group with 32 activation bytes: unsigned grid (IQ2/IQ3) */
static inline __attribute__((always_inline)) __m256i group_dot_u(const iq_group *o, const int8_t *q8) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(o->g, _mm256_sign_epi8(loadu256(q8), o->sg)), o->sc);
}

/* signed values (IQ1) */
static inline __attribute__((always_inline)) __m256i group_dot_s(const iq_group *o, const int8_t *q8) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(o->g, o->g), _mm256_sign_epi8(loadu256(q8), o->g));
    return _mm256_madd_epi16(p, o->sc);
}

/* ---------------------------------------------------------------- dot kernels */

/* One kernel body per type: DECODE(block, ib, &group), DOT (group_dot_u / _s), the weight
 * scale D(block) and the final factor. Four-token variants decode each group once. */
/* Prompt path: a row is unpacked once into QTK_UNPACKED_BYTES per super-block (the signed
 * value of each element plus 64, as unsigned bytes; each group's int16 scale vector; the 16 factors
 * 64 * scale of the sixteen 16-element bsums; the float d), then dotted with eight tokens at a time
 * by one generic kernel. Both the single-row kernel and the eight-token kernel form per super-block
 * the exact integer total and run s = s + (d * dy) * tot, then return FACTOR * s: the same bits. */
#define UB_L 0
#define UB_S 256
#define UB_F 512
#define UB_D 544

#define IQ_DOT_KERNELS(name, btype, DECODE, DOT, DX, FACTOR, S16, SIGNED)                                \
    void qtk_vec_dot_##name##_q8_K_avx2(int64_t n, float *s, const void *vx, const void *vy) {      \
        const btype *x = vx;                                                                               \
        const block_q8_K *y = vy;                                                                          \
        float sum = 0.0f, dprev = 0.0f;                                                                    \
        __m256i prev = _mm256_setzero_si256();                                                             \
        /* super-block i is reduced and added while i + 1 is being computed (its horizontal sum would  \
         * otherwise hold up the next super-block's decode); the order of the additions is unchanged */ \
        for (int64_t i = 0; i < n / QK_K; ++i) {                                                           \
            __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();                              \
            const __m256i s16 = S16(&x[i]);                                                                \
            _Pragma("GCC unroll 4") for (int ib = 0; ib < QK_K / 32; ib += 2) {                            \
                iq_group g0, g1;                                                                           \
                DECODE(&x[i], ib, s16, &g0);                                                               \
                DECODE(&x[i], ib + 1, s16, &g1);                                                           \
                s0 = _mm256_add_epi32(s0, DOT(&g0, y[i].qs + 32 * ib));                                    \
                s1 = _mm256_add_epi32(s1, DOT(&g1, y[i].qs + 32 * ib + 32));                               \
            }                                                                                              \
            if (i > 0) {                                                                                   \
                sum = sum + dprev * (float)hsum_i32x8(prev);                                               \
            }                                                                                              \
            prev = _mm256_add_epi32(s0, s1);                                                               \
            dprev = DX(&x[i]) * y[i].d;                                                                    \
        }                                                                                                  \
        if (n >= QK_K) {                                                                                   \
            sum = sum + dprev * (float)hsum_i32x8(prev);                                                   \
        }                                                                                                  \
        *s = FACTOR * sum;                                                                                 \
    }                                                                                                      \
    void qtk_unpack_##name##_avx2(const void *vx, int64_t n, uint8_t *u) {                                 \
        const btype *x = vx;                                                                               \
        for (int64_t i = 0; i < n / QK_K; ++i, u += QTK_UNPACKED_BYTES) {                               \
            const __m256i s16 = S16(&x[i]);                                                                \
            int16_t f[16];                                                                                 \
            for (int ib = 0; ib < QK_K / 32; ++ib) {                                                       \
                iq_group g;                                                                                \
                DECODE(&x[i], ib, s16, &g);                                                                \
                const __m256i v = SIGNED ? g.g : _mm256_sign_epi8(g.g, g.sg);                              \
                _mm256_storeu_si256((__m256i *)(u + UB_L + 32 * ib), _mm256_add_epi8(v, _mm256_set1_epi8(64))); \
                _mm256_storeu_si256((__m256i *)(u + UB_S + 32 * ib), g.sc);                                \
                f[2 * ib] = (int16_t)(64 * _mm256_extract_epi16(g.sc, 0));                                 \
                f[2 * ib + 1] = (int16_t)(64 * _mm256_extract_epi16(g.sc, 8));                             \
            }                                                                                              \
            memcpy(u + UB_F, f, sizeof f);                                                                 \
            const float d = DX(&x[i]);                                                                     \
            memcpy(u + UB_D, &d, 4);                                                                       \
        }                                                                                                  \
    }                                                                                                      \
    void qtk_vec_dot8u_##name##_q8_K_avx2(int64_t n, float *s, const void *u, const qtk_q8k_group *g) {   \
        iq_dot8u(n, s, u, g, FACTOR);                                                                      \
    }

/* lane t = the sum of the eight lanes of a[t] */
static inline __attribute__((always_inline)) __m256i reduce8_iq(const __m256i a[8]) {
    const __m256i b0 = _mm256_hadd_epi32(a[0], a[1]), b1 = _mm256_hadd_epi32(a[2], a[3]);
    const __m256i b2 = _mm256_hadd_epi32(a[4], a[5]), b3 = _mm256_hadd_epi32(a[6], a[7]);
    const __m256i c0 = _mm256_hadd_epi32(b0, b1), c1 = _mm256_hadd_epi32(b2, b3);
    return _mm256_add_epi32(_mm256_permute2x128_si256(c0, c1, 0x20), _mm256_permute2x128_si256(c0, c1, 0x31));
}

/* one unpacked row against eight tokens */
static inline __attribute__((always_inline)) void iq_dot8u(int64_t n, float *s, const void *vu, const qtk_q8k_group *g,
                                                          float factor) {
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
            const __m256i L = loadu256(u + UB_L + 32 * j), S = loadu256(u + UB_S + 32 * j);
#pragma GCC unroll 8
            for (int t = 0; t < 8; ++t) {
                acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(_mm256_maddubs_epi16(L, loadu256(y[t][i].qs + 32 * j)), S));
            }
        }
        const __m256i F = loadu256(u + UB_F);
#pragma GCC unroll 8
        for (int t = 0; t < 8; ++t) {
            acc[t] = _mm256_sub_epi32(acc[t], _mm256_madd_epi16(loadu256(y[t][i].bsums), F));
        }
        float d;
        memcpy(&d, u + UB_D, 4);
        const __m256 dy = _mm256_setr_ps(y[0][i].d, y[1][i].d, y[2][i].d, y[3][i].d, y[4][i].d, y[5][i].d, y[6][i].d,
                                         y[7][i].d);
        sum = _mm256_add_ps(sum, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(d), dy), _mm256_cvtepi32_ps(reduce8_iq(acc))));
    }
    _mm256_storeu_ps(s, _mm256_mul_ps(_mm256_set1_ps(factor), sum));
}

#define DX_HALF(b) qtk_h2f((b)->d)
#define S16_NONE(b) _mm256_setzero_si256()
#define S16_IQ2(b) iq2_scales16((b)->scales)
#define S16_IQ1_M(b) iq1_m_scales16(b)

IQ_DOT_KERNELS(iq2_xxs, block_iq2_xxs, iq2_xxs_group, group_dot_u, DX_HALF, 0.125f, S16_NONE, 0)
IQ_DOT_KERNELS(iq2_xs, block_iq2_xs, iq2_xs_group, group_dot_u, DX_HALF, 0.125f, S16_IQ2, 0)
IQ_DOT_KERNELS(iq2_s, block_iq2_s, iq2_s_group, group_dot_u, DX_HALF, 0.125f, S16_IQ2, 0)
IQ_DOT_KERNELS(iq3_xxs, block_iq3_xxs, iq3_xxs_group, group_dot_u, DX_HALF, 0.25f, S16_NONE, 0)
IQ_DOT_KERNELS(iq3_s, block_iq3_s, iq3_s_group, group_dot_u, DX_HALF, 1.0f, S16_NONE, 0)
IQ_DOT_KERNELS(iq1_s, block_iq1_s, iq1_s_group, group_dot_s, DX_HALF, 0.125f, S16_NONE, 1)
IQ_DOT_KERNELS(iq1_m, block_iq1_m, iq1_m_group, group_dot_s, iq1_m_d, 0.125f, S16_IQ1_M, 1)

/* ---------------------------------------------------------------- dequantizers */

/* y[j] = db * v_j, negated where bit j of signs is set (v_j the 8 unsigned grid bytes of g) */
static inline __attribute__((always_inline)) void emit8_avx2(float *y, __m256 db, uint64_t g, uint32_t signs) {
    const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)g)));
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i neg = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)signs), bit), bit);
    const __m256 flip = _mm256_and_ps(_mm256_castsi256_ps(neg), _mm256_set1_ps(-0.0f));
    _mm256_storeu_ps(y, _mm256_xor_ps(_mm256_mul_ps(db, v), flip));
}

/* y[j] = dl * ((float)g_j + delta), g_j the 8 signed grid bytes */
static inline __attribute__((always_inline)) void emit8_iq1(float *y, __m256 dl, uint64_t g, float delta) {
    const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128((long long)g)));
    _mm256_storeu_ps(y, _mm256_mul_ps(dl, _mm256_add_ps(v, _mm256_set1_ps(delta))));
}

static inline __attribute__((always_inline)) uint64_t pair4(const uint32_t *grid, int a, int b) {
    return (uint64_t)grid[a] | ((uint64_t)grid[b] << 32);
}

void qtk_dequantize_row_iq2_xxs_avx2(const void *vx, float *y, int64_t n) {
    const block_iq2_xxs *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const uint32_t idx = u16pair(x[i].qs + 4 * ib), aux = u16pair(x[i].qs + 4 * ib + 2);
            const __m256 db = _mm256_set1_ps(d * (0.5f + (aux >> 28)) * 0.25f);
            for (int l = 0; l < 4; ++l, y += 8) {
                emit8_avx2(y, db, qtk_iq2xxs_grid[(idx >> (8 * l)) & 255], qtk_ksigns_iq2xs[(aux >> (7 * l)) & 127]);
            }
        }
    }
}

void qtk_dequantize_row_iq2_xs_avx2(const void *vx, float *y, int64_t n) {
    const block_iq2_xs *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const __m256 db[2] = {_mm256_set1_ps(d * (0.5f + (x[i].scales[ib] & 0xF)) * 0.25f),
                                  _mm256_set1_ps(d * (0.5f + (x[i].scales[ib] >> 4)) * 0.25f)};
            for (int l = 0; l < 4; ++l, y += 8) {
                const uint16_t q = x[i].qs[4 * ib + l];
                emit8_avx2(y, db[l / 2], qtk_iq2xs_grid[q & 511], qtk_ksigns_iq2xs[q >> 9]);
            }
        }
    }
}

void qtk_dequantize_row_iq2_s_avx2(const void *vx, float *y, int64_t n) {
    const block_iq2_s *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        const uint8_t *signs = x[i].qs + QK_K / 8;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const __m256 db[2] = {_mm256_set1_ps(d * (0.5f + (x[i].scales[ib] & 0xF)) * 0.25f),
                                  _mm256_set1_ps(d * (0.5f + (x[i].scales[ib] >> 4)) * 0.25f)};
            for (int l = 0; l < 4; ++l, y += 8) {
                const int index = x[i].qs[4 * ib + l] | (((x[i].qh[ib] >> (2 * l)) & 3) << 8);
                emit8_avx2(y, db[l / 2], qtk_iq2s_grid[index], signs[4 * ib + l]);
            }
        }
    }
}

void qtk_dequantize_row_iq3_xxs_avx2(const void *vx, float *y, int64_t n) {
    const block_iq3_xxs *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const uint32_t aux = rd_u32(x[i].qs + QK_K / 4 + 4 * ib);
            const __m256 db = _mm256_set1_ps(d * (0.5f + (aux >> 28)) * 0.5f);
            for (int l = 0; l < 4; ++l, y += 8) {
                const uint64_t g = pair4(qtk_iq3xxs_grid, qs[8 * ib + 2 * l], qs[8 * ib + 2 * l + 1]);
                emit8_avx2(y, db, g, qtk_ksigns_iq2xs[(aux >> (7 * l)) & 127]);
            }
        }
    }
}

void qtk_dequantize_row_iq3_s_avx2(const void *vx, float *y, int64_t n) {
    const block_iq3_s *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int s = (x[i].scales[ib / 2] >> (4 * (ib % 2))) & 0xF;
            const __m256 db = _mm256_set1_ps(d * (1 + 2 * s));
            const uint8_t *qs = x[i].qs + 8 * ib;
            const uint8_t qh = x[i].qh[ib];
            for (int l = 0; l < 4; ++l, y += 8) {
                const int i1 = qs[2 * l] | (((qh >> (2 * l)) & 1) << 8);
                const int i2 = qs[2 * l + 1] | (((qh >> (2 * l + 1)) & 1) << 8);
                emit8_avx2(y, db, pair4(qtk_iq3s_grid, i1, i2), x[i].signs[4 * ib + l]);
            }
        }
    }
}

void qtk_dequantize_row_iq1_s_avx2(const void *vx, float *y, int64_t n) {
    const block_iq1_s *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const uint16_t qh = x[i].qh[ib];
            const __m256 dl = _mm256_set1_ps(d * (2 * ((qh >> 12) & 7) + 1));
            const float delta = qh & 0x8000 ? -QTK_IQ1_DELTA : QTK_IQ1_DELTA;
            for (int l = 0; l < 4; ++l, y += 8) {
                emit8_iq1(y, dl, qtk_iq1s_grid[x[i].qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)], delta);
            }
        }
    }
}

void qtk_dequantize_row_iq1_m_avx2(const void *vx, float *y, int64_t n) {
    const block_iq1_m *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = iq1_m_d(&x[i]);
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const uint16_t sc = iq1_m_scales_word(&x[i], ib / 4);
            const __m256 dl = _mm256_set1_ps(d * (2 * ((sc >> (3 * (ib % 4))) & 7) + 1));
            const uint8_t qh = x[i].qh[ib];
            for (int k = 0; k < 2; ++k, y += 8) {
                const uint8_t nib = (uint8_t)(qh >> (4 * k));
                const float delta = nib & 0x08 ? -QTK_IQ1_DELTA : QTK_IQ1_DELTA;
                emit8_iq1(y, dl, qtk_iq1s_grid[x[i].qs[2 * ib + k] | ((nib & 7) << 8)], delta);
            }
        }
    }
}

#include "arch/x86/avx2_end.h"

#endif
