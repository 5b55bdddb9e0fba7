/* Eight float32 lanes with GCC/Clang vector extensions: the vocabulary of the fast quantizers.
 *
 * This header is included by each fastq_<variant>.c translation unit, after that unit has chosen
 * its instruction set (nothing at baseline, a "#pragma GCC target" region for AVX2), so the same
 * source becomes SSE2 or NEON code at baseline and AVX2 code inside the region.
 *
 * Bit-exactness rules kept by everything written with these helpers:
 * - every float operation is a separate IEEE float32 operation (+, -, *, / and sqrt are correctly
 *   rounded in every ISA); the build's -ffp-contract=off forbids fusing a*b+c, and
 *   tools/check_no_fma.sh proves that no fused instruction appears in the objects;
 * - a data-dependent branch of the reference becomes a lane mask (all ones / all zeros per lane)
 *   and a select; a lane never reads another lane's data;
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
typedef int32_t v8i_u __attribute__((vector_size(32), aligned(4)));

#define FQ_INLINE static inline __attribute__((always_inline))
#define FQ_ALIGN __attribute__((aligned(32)))

FQ_INLINE v8f fq_load(const float *p) {
    return *(const v8f_u *)p;
}

FQ_INLINE void fq_store(float *p, v8f v) {
    *(v8f_u *)p = v;
}

FQ_INLINE v8i fq_loadi(const int32_t *p) {
    return *(const v8i_u *)p;
}

FQ_INLINE void fq_storei(int32_t *p, v8i v) {
    *(v8i_u *)p = v;
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
    return fq_seli(a < b, a, b);
}

FQ_INLINE v8i fq_maxi(v8i a, v8i b) {
    return fq_seli(a > b, a, b);
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
    const v8i up = frac >= fq_splat(0.5f);                /* -1 where the magnitude grows */
    const v8i neg = f < fq_zero();                        /* -1 for negative f */
    /* +1 for positive, -1 for negative, only where up */
    return t + (up & ((neg & fq_splati(-1)) | (~neg & fq_splati(1))));
}

FQ_INLINE int fq_any(v8i m) {
    int32_t a[8];
    memcpy(a, &m, sizeof a);
    return (a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7]) != 0;
}

FQ_INLINE float fq_lane(v8f v, int k) {
    return v[k];
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
