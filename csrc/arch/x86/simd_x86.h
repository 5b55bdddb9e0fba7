/* Small AVX2 helpers shared by the avx2_*.c files. Include only inside an AVX2 target region
 * (after `#pragma GCC target("avx2,fma,f16c")`). */
#ifndef QTK_SIMD_X86_H
#define QTK_SIMD_X86_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "ref/blocks.h"
#include "ref/kernels.h"

static inline float qtk_h2f(qtk_half h) {
    return _cvtsh_ss(h);
}

static inline float hsum_f32x8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_i32x8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

static inline int hsum_i32x4(__m128i s) {
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

static inline __m256i loadu256(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

/* 16 bytes of nibble pairs -> 32 bytes: the 16 low nibbles, then the 16 high nibbles. */
static inline __m256i nibbles32(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, 0xFF where the bit is set (bit j -> byte j). */
static inline __m256i bits32_to_mask(uint32_t bits) {
    const __m256i spread = _mm256_setr_epi64x(0x0000000000000000LL, 0x0101010101010101LL, 0x0202020202020202LL,
                                              0x0303030303030303LL);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

/* Sum of the 16-bit pair products of unsigned u and signed s bytes, as 8 int32 (u * s <= 2^15 per pair). */
static inline __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* Same for two signed byte vectors; x must not hold -128 together with y = -128. */
static inline __m256i dot_s8s8(__m256i x, __m256i y) {
    return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

static inline uint32_t rd_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---------------------------------------------------------------- shared by avx2_dot.c and avx2_gemm.c */

/* The float tail of a Q8_0 / Q8_1 activation row (see kernels.h): d of block i, then the second
 * field (Q8_0: the level sum, Q8_1: s). */
#define YD(y, nb, i) qtk_ld_f32((const uint8_t *)((y) + (nb)) + 4 * (i))
#define YS(y, nb, i) qtk_ld_f32((const uint8_t *)((y) + (nb)) + 4 * ((nb) + (i)))

static inline __m256i iq4_lut(void) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qtk_kvalues_iq4nl);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(t), t, 1);
}

/* The 16 per-16-element scales of a K-quant block as int16, even sub-blocks in the low 128 bits and
 * odd ones in the high 128 bits, so that pair p (sub-blocks 2p, 2p+1: one 32-byte vector of levels)
 * is one in-lane shuffle away. */
static inline __m256i scales_even_odd_epi8(__m128i sc8) {
    const __m128i eo = _mm_shuffle_epi8(sc8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
    return _mm256_cvtepi8_epi16(eo);
}

static inline __m256i scales_even_odd_epu8(__m128i sc8) {
    const __m128i eo = _mm_shuffle_epi8(sc8, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
    return _mm256_cvtepu8_epi16(eo);
}

/* [scale 2p x 8 | scale 2p+1 x 8] */
static inline __m256i scale_pair(__m256i s16, int p) {
    const __m256i ctrl = _mm256_set1_epi16((short)(((2 * p + 1) << 8) | (2 * p)));
    return _mm256_shuffle_epi8(s16, ctrl);
}

/* Q8_K's 16 bsums times 16 int16 factors, summed pairwise: 8 int32 lanes */
static inline __m256i bsums_madd(const int16_t *bsums, __m256i f16) {
    return _mm256_madd_epi16(loadu256(bsums), f16);
}

static inline float hsum_f32x4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The 16 six-bit Q3_K scales (minus 32) as int8. */
static inline __m128i q3_K_scales(const uint8_t *s) {
    const uint32_t a0 = rd_u32(s), a1 = rd_u32(s + 4), t = rd_u32(s + 8);
    const __m128i v = _mm_setr_epi32((int)((a0 & 0x0F0F0F0Fu) | ((t & 0x03030303u) << 4)),
                                     (int)((a1 & 0x0F0F0F0Fu) | (((t >> 2) & 0x03030303u) << 4)),
                                     (int)(((a0 >> 4) & 0x0F0F0F0Fu) | (((t >> 4) & 0x03030303u) << 4)),
                                     (int)(((a1 >> 4) & 0x0F0F0F0Fu) | (((t >> 6) & 0x03030303u) << 4)));
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

/* The eight 6-bit scales (bytes 0..7 of u) and mins (bytes 8..15) of the Q4_K/Q5_K packing. */
static inline void k4_scales(const uint8_t *q, uint32_t u[4]) {
    const uint32_t a = rd_u32(q), b = rd_u32(q + 4), c = rd_u32(q + 8);
    u[0] = a & 0x3F3F3F3Fu;
    u[1] = (c & 0x0F0F0F0Fu) | (((a >> 6) & 0x03030303u) << 4);
    u[2] = b & 0x3F3F3F3Fu;
    u[3] = ((c >> 4) & 0x0F0F0F0Fu) | (((b >> 6) & 0x03030303u) << 4);
}

/* The mins term of a Q4_K/Q5_K block: mins (bytes 8..15 of u) times the bsums pairs (2j, 2j+1)
 * of sub-block j, as 4 int32 lanes. */
static inline __m128i k4_min_madd(const uint32_t u[4], const int16_t *bsums) {
    const __m128i b0 = _mm_loadu_si128((const __m128i *)bsums);
    const __m128i b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
    const __m128i mins = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)(u + 2)));
    return _mm_madd_epi16(_mm_hadd_epi16(b0, b1), mins);
}

/* The four 6-bit level vectors of one half (128 elements) of a Q6_K block. */
static inline void q6_K_levels4(const uint8_t *ql, const uint8_t *qhp, __m256i q[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i ql0 = loadu256(ql), ql1 = loadu256(ql + 32), qh = loadu256(qhp);
    q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x0C)), 2));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, _mm256_set1_epi8(0x30)));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                           _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8((char)0xC0)), 2));
}

#endif
