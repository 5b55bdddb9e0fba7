/* Eight float32 lanes with GCC/Clang vector extensions: the vocabulary of the fast quantizers.
 *
 * This header is included by each fastq_<variant>.c translation unit, after that unit has chosen
 * its instruction set (nothing at baseline, a "#pragma GCC target" region for AVX2), so the same
 * source becomes SSE2 or NEON code at baseline and AVX2 code inside the region.
 *
 * Bit-exactness rules kept by everything written with these helpers:
 * - every float operation is a separate IEEE float32 operation (+, -, *, / and sqrt are correctly
 *   rounded in every ISA); the build's -ffp-contract=off forbids fusing a*b+c, and
 *   tools/check/check_no_fma.sh proves that no fused instruction appears in the objects;
 * - a data-dependent branch of the reference becomes a lane mask (all ones / all zeros per lane)
 *   and a select; in the lane searches a lane never reads another lane's data (the horizontal
 *   reductions below serve the legacy types, where only order-free max/min are reduced);
 * - integer results come from bit tricks (ggml's nearest_int) or from conversions whose inputs are
 *   known to be in range, never from a cast the C standard leaves undefined.
 */
#ifndef QTK_FASTQ_LANES_H
#define QTK_FASTQ_LANES_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
/* unaligned views for loads and stores */
typedef float v8f_u __attribute__((vector_size(32), aligned(4)));

#define FQ_INLINE static inline __attribute__((always_inline))
#define FQ_ALIGN __attribute__((aligned(32)))

FQ_INLINE v8f fq_load(const float *p) {
    return *(const v8f_u *)p;
}

FQ_INLINE void fq_store(float *p, v8f v) {
    *(v8f_u *)p = v;
}

FQ_INLINE v8f fq_splat(float f) {
    return (v8f){f, f, f, f, f, f, f, f};
}

FQ_INLINE v8i fq_splati(int32_t i) {
    return (v8i){i, i, i, i, i, i, i, i};
}

FQ_INLINE v8f fq_zero(void) {
    return fq_splat(0.0f);
}

/* Lane comparisons: -1 where true, 0 where false. Where 256-bit vectors are not native (SSE2,
 * NEON) a vector comparison written with an operator is scalarised by GCC; split it into two
 * native 128-bit comparisons instead. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef union {
    v8f f;
    v8i i;
    v4f fh[2];
    v4i ih[2];
} fq_halves;

#if defined(__AVX__)
#define FQ_CMP_F(name, op) \
    FQ_INLINE v8i name(v8f a, v8f b) { return a op b; }
#define FQ_CMP_I(name, op) \
    FQ_INLINE v8i name(v8i a, v8i b) { return a op b; }
#else
#define FQ_CMP_F(name, op)                                     \
    FQ_INLINE v8i name(v8f a, v8f b) {                         \
        fq_halves x = {.f = a}, y = {.f = b}, r;               \
        r.ih[0] = x.fh[0] op y.fh[0];                          \
        r.ih[1] = x.fh[1] op y.fh[1];                          \
        return r.i;                                            \
    }
#define FQ_CMP_I(name, op)                                     \
    FQ_INLINE v8i name(v8i a, v8i b) {                         \
        fq_halves x = {.i = a}, y = {.i = b}, r;               \
        r.ih[0] = x.ih[0] op y.ih[0];                          \
        r.ih[1] = x.ih[1] op y.ih[1];                          \
        return r.i;                                            \
    }
#endif
FQ_CMP_F(fq_lt, <)
FQ_CMP_F(fq_gt, >)
FQ_CMP_F(fq_le, <=)
FQ_CMP_F(fq_ge, >=)
FQ_CMP_F(fq_eq, ==)
FQ_CMP_F(fq_ne, !=)
FQ_CMP_I(fq_lti, <)
FQ_CMP_I(fq_gti, >)

/* m ? a : b, per lane; m is a comparison result (-1 or 0 in each lane) */
FQ_INLINE v8f fq_sel(v8i m, v8f a, v8f b) {
    return (v8f)(((v8i)a & m) | ((v8i)b & ~m));
}

FQ_INLINE v8i fq_seli(v8i m, v8i a, v8i b) {
    return (a & m) | (b & ~m);
}

FQ_INLINE v8f fq_abs(v8f a) {
    return (v8f)((v8i)a & fq_splati(0x7fffffff));
}

FQ_INLINE v8i fq_mini(v8i a, v8i b) {
    return fq_seli(fq_lti(a, b), a, b);
}

FQ_INLINE v8i fq_maxi(v8i a, v8i b) {
    return fq_seli(fq_gti(a, b), a, b);
}

FQ_INLINE v8i fq_clampi(v8i v, int32_t lo, int32_t hi) {
    return fq_maxi(fq_splati(lo), fq_mini(fq_splati(hi), v));
}

/* ggml's nearest_int, lane by lane: round half to even through 1.5 * 2^23, same wrap-around */
FQ_INLINE v8i fq_nint(v8f f) {
    const v8f v = f + fq_splat(12582912.0f);
    return ((v8i)v & fq_splati(0x007fffff)) - fq_splati(0x00400000);
}

FQ_INLINE v8f fq_itof(v8i i) {
    return __builtin_convertvector(i, v8f);
}

/* Truncation toward zero, as C's (int)f; callers guarantee |f| < 2^31. */
FQ_INLINE v8i fq_ftoi_trunc(v8f f) {
    return __builtin_convertvector(f, v8i);
}

/* roundf / lroundf (half away from zero) for |f| < 2^22: truncate, then step away from zero when
 * the exact remainder |f - trunc(f)| is at least one half. */
FQ_INLINE v8i fq_round_away(v8f f) {
    const v8i t = fq_ftoi_trunc(f);
    const v8f frac = fq_abs(f - fq_itof(t));
    const v8i up = fq_ge(frac, fq_splat(0.5f));           /* -1 where the magnitude grows */
    const v8i neg = fq_lt(f, fq_zero());                  /* -1 for negative f */
    /* +1 for positive, -1 for negative, only where up */
    return t + (up & ((neg & fq_splati(-1)) | (~neg & fq_splati(1))));
}

/* Sign bit of each lane, lane k at bit k. */
FQ_INLINE int fq_movemask(v8i m) {
#if defined(__AVX__)
    return _mm256_movemask_ps((__m256)m);
#elif defined(__SSE2__)
    fq_halves h = {.i = m};
    return _mm_movemask_ps((__m128)h.fh[0]) | (_mm_movemask_ps((__m128)h.fh[1]) << 4);
#else
    int r = 0;
    for (int k = 0; k < 8; ++k) {
        r |= (int)(((uint32_t)m[k]) >> 31) << k;
    }
    return r;
#endif
}

/* Any lane set in a comparison result. */
FQ_INLINE int fq_any(v8i m) {
    return fq_movemask(m) != 0;
}

/* Largest lane (signed). */
FQ_INLINE int32_t fq_hmaxi(v8i v) {
#if defined(__AVX2__)
    __m128i m = _mm_max_epi32(_mm256_castsi256_si128((__m256i)v), _mm256_extracti128_si256((__m256i)v, 1));
    m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4E));
    m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xB1));
    return _mm_cvtsi128_si32(m);
#elif defined(__SSE2__)
    fq_halves h = {.i = v};
    __m128i m = (__m128i)h.ih[0], b = (__m128i)h.ih[1], gt;
    gt = _mm_cmpgt_epi32(m, b);
    m = _mm_or_si128(_mm_and_si128(gt, m), _mm_andnot_si128(gt, b));
    b = _mm_shuffle_epi32(m, 0x4E);
    gt = _mm_cmpgt_epi32(m, b);
    m = _mm_or_si128(_mm_and_si128(gt, m), _mm_andnot_si128(gt, b));
    b = _mm_shuffle_epi32(m, 0xB1);
    gt = _mm_cmpgt_epi32(m, b);
    m = _mm_or_si128(_mm_and_si128(gt, m), _mm_andnot_si128(gt, b));
    return _mm_cvtsi128_si32(m);
#elif defined(__aarch64__)
    fq_halves h = {.i = v};
    int32x4_t a, b;
    memcpy(&a, &h.ih[0], 16);
    memcpy(&b, &h.ih[1], 16);
    return vmaxvq_s32(vmaxq_s32(a, b));
#else
    int32_t r = v[0];
    for (int k = 1; k < 8; ++k) {
        r = v[k] > r ? v[k] : r;
    }
    return r;
#endif
}

/* Smallest / largest lane of a float vector without NaN (order-free for those). */
FQ_INLINE float fq_hminf(v8f v) {
#if defined(__AVX__)
    __m128 m = _mm_min_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 0x55));
    return _mm_cvtss_f32(m);
#elif defined(__SSE2__)
    fq_halves h = {.f = v};
    __m128 m = _mm_min_ps((__m128)h.fh[0], (__m128)h.fh[1]);
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 0x55));
    return _mm_cvtss_f32(m);
#elif defined(__aarch64__)
    fq_halves h = {.f = v};
    float32x4_t a, b;
    memcpy(&a, &h.fh[0], 16);
    memcpy(&b, &h.fh[1], 16);
    return vminvq_f32(vminq_f32(a, b));   /* no NaN here: NEON's NaN rules do not matter */
#else
    float r = v[0];
    for (int k = 1; k < 8; ++k) {
        r = v[k] < r ? v[k] : r;
    }
    return r;
#endif
}

FQ_INLINE float fq_hmaxf(v8f v) {
#if defined(__AVX__)
    __m128 m = _mm_max_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 0x55));
    return _mm_cvtss_f32(m);
#elif defined(__SSE2__)
    fq_halves h = {.f = v};
    __m128 m = _mm_max_ps((__m128)h.fh[0], (__m128)h.fh[1]);
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 0x55));
    return _mm_cvtss_f32(m);
#elif defined(__aarch64__)
    fq_halves h = {.f = v};
    float32x4_t a, b;
    memcpy(&a, &h.fh[0], 16);
    memcpy(&b, &h.fh[1], 16);
    return vmaxvq_f32(vmaxq_f32(a, b));   /* no NaN here: NEON's NaN rules do not matter */
#else
    float r = v[0];
    for (int k = 1; k < 8; ++k) {
        r = v[k] > r ? v[k] : r;
    }
    return r;
#endif
}

/* Float min / max with the reference's comparison: min(a, b) = a < b ? a : b. */
FQ_INLINE v8f fq_minf(v8f a, v8f b) {
#if defined(__AVX__)
    return (v8f)_mm256_min_ps((__m256)a, (__m256)b);
#elif defined(__SSE2__)
    fq_halves x = {.f = a}, y = {.f = b}, r;
    r.fh[0] = (v4f)_mm_min_ps((__m128)x.fh[0], (__m128)y.fh[0]);
    r.fh[1] = (v4f)_mm_min_ps((__m128)x.fh[1], (__m128)y.fh[1]);
    return r.f;
#else
    return fq_sel(fq_lt(a, b), a, b);
#endif
}

FQ_INLINE v8f fq_maxf(v8f a, v8f b) {
#if defined(__AVX__)
    return (v8f)_mm256_max_ps((__m256)a, (__m256)b);
#elif defined(__SSE2__)
    fq_halves x = {.f = a}, y = {.f = b}, r;
    r.fh[0] = (v4f)_mm_max_ps((__m128)x.fh[0], (__m128)y.fh[0]);
    r.fh[1] = (v4f)_mm_max_ps((__m128)x.fh[1], (__m128)y.fh[1]);
    return r.f;
#else
    return fq_sel(fq_gt(a, b), a, b);
#endif
}

/* Store lanes of a then b as 16 bytes; every lane must hold a value in 0..255. */
FQ_INLINE void fq_store_u8x16(v8i a, v8i b, uint8_t *dst) {
#if defined(__AVX2__)
    const __m256i w = _mm256_packs_epi32((__m256i)a, (__m256i)b);   /* a0-3 b0-3 | a4-7 b4-7 */
    const __m256i p = _mm256_permute4x64_epi64(w, 0xD8);             /* a0-7 | b0-7 (16-bit) */
    const __m128i r = _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_storeu_si128((__m128i *)dst, r);
#elif defined(__SSE2__)
    fq_halves ha = {.i = a}, hb = {.i = b};
    const __m128i wa = _mm_packs_epi32((__m128i)ha.ih[0], (__m128i)ha.ih[1]);
    const __m128i wb = _mm_packs_epi32((__m128i)hb.ih[0], (__m128i)hb.ih[1]);
    _mm_storeu_si128((__m128i *)dst, _mm_packus_epi16(wa, wb));
#else
    for (int k = 0; k < 8; ++k) {
        dst[k] = (uint8_t)a[k];
        dst[8 + k] = (uint8_t)b[k];
    }
#endif
}

/* The same for values in -128..127. */
FQ_INLINE void fq_store_i8x16(v8i a, v8i b, int8_t *dst) {
#if defined(__AVX2__)
    const __m256i w = _mm256_packs_epi32((__m256i)a, (__m256i)b);
    const __m256i p = _mm256_permute4x64_epi64(w, 0xD8);
    const __m128i r = _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_storeu_si128((__m128i *)dst, r);
#elif defined(__SSE2__)
    fq_halves ha = {.i = a}, hb = {.i = b};
    const __m128i wa = _mm_packs_epi32((__m128i)ha.ih[0], (__m128i)ha.ih[1]);
    const __m128i wb = _mm_packs_epi32((__m128i)hb.ih[0], (__m128i)hb.ih[1]);
    _mm_storeu_si128((__m128i *)dst, _mm_packs_epi16(wa, wb));
#else
    for (int k = 0; k < 8; ++k) {
        dst[k] = (int8_t)a[k];
        dst[8 + k] = (int8_t)b[k];
    }
#endif
}

/* Store lanes as 8 little-endian uint16; every lane must hold a value in 0..65535. */
FQ_INLINE void fq_store_u16x8(v8i a, uint16_t *dst) {
#if defined(__AVX2__)
    const __m256i w = _mm256_packus_epi32((__m256i)a, (__m256i)a);
    const __m256i p = _mm256_permute4x64_epi64(w, 0x08);
    _mm_storeu_si128((__m128i *)dst, _mm256_castsi256_si128(p));
#elif defined(__SSE2__)
    /* no unsigned 32->16 pack in SSE2: bias into the signed range and back */
    fq_halves h = {.i = a - fq_splati(0x8000)};
    const __m128i w = _mm_packs_epi32((__m128i)h.ih[0], (__m128i)h.ih[1]);
    _mm_storeu_si128((__m128i *)dst, _mm_xor_si128(w, _mm_set1_epi16((short)0x8000)));
#else
    for (int k = 0; k < 8; ++k) {
        dst[k] = (uint16_t)a[k];
    }
#endif
}

/* Correctly rounded square root per lane (IEEE sqrt in every ISA, so identical to sqrtf). The
 * generic extensions have no vector sqrt, so each ISA names its own. */
FQ_INLINE v8f fq_sqrt(v8f a) {
#if defined(__AVX__)
    return (v8f)_mm256_sqrt_ps((__m256)a);
#elif defined(__SSE2__)
    __m128 lo, hi;
    memcpy(&lo, &a, 16);
    memcpy(&hi, (const char *)&a + 16, 16);
    lo = _mm_sqrt_ps(lo);
    hi = _mm_sqrt_ps(hi);
    v8f r;
    memcpy(&r, &lo, 16);
    memcpy((char *)&r + 16, &hi, 16);
    return r;
#elif defined(__aarch64__)
    float32x4_t lo, hi;
    memcpy(&lo, &a, 16);
    memcpy(&hi, (const char *)&a + 16, 16);
    lo = vsqrtq_f32(lo);
    hi = vsqrtq_f32(hi);
    v8f r;
    memcpy(&r, &lo, 16);
    memcpy((char *)&r + 16, &hi, 16);
    return r;
#else
    v8f r;
    for (int k = 0; k < 8; ++k) {
        r[k] = sqrtf(a[k]);   /* arguments are never negative here */
    }
    return r;
#endif
}

#endif
