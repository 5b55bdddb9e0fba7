/* Helpers shared by the portable reference code: half/bfloat conversion and ggml's rounding.
 *
 * Bit-exact agreement with ggml depends on three things done here: float32 arithmetic in the
 * same order (the build uses -ffp-contract=off so no fused multiply-add changes a rounding),
 * round-half-to-even through the 1.5*2^23 trick for nearest_int, and IEEE round-to-nearest-even
 * for fp32 -> fp16.
 */
#ifndef QTK_COMMON_H
#define QTK_COMMON_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ref/blocks.h"

#define QTK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QTK_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Groups whose largest magnitude is below this are treated as all-zero (ggml's GROUP_MAX_EPS). */
#define QTK_GROUP_EPS 1e-15f

static inline uint32_t qtk_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float qtk_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* fp32 -> IEEE binary16, round to nearest even. NaN becomes a quiet NaN (0x7e00 with the sign),
 * values from 65520 up become infinity. */
static inline qtk_half qtk_fp32_to_fp16(float f) {
    const uint32_t u = qtk_f32_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return (qtk_half)(sign | 0x7e00u);
    }
    if (a >= 0x477ff000u) {          /* >= 65520: rounds to infinity */
        return (qtk_half)(sign | 0x7c00u);
    }
    if (a >= 0x38800000u) {          /* normal half: >= 2^-14 */
        uint32_t h = (a >> 13) - (112u << 10);
        const uint32_t rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) {
            h += 1;                  /* a carry into the exponent is the right answer */
        }
        return (qtk_half)(sign | h);
    }
    /* subnormal half or zero: value = m * 2^(e-150); result = round(value / 2^-24) */
    const uint32_t e = a >> 23;
    if (e < 102) {                   /* below 2^-25: rounds to zero */
        return (qtk_half)sign;
    }
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e; /* 14..24 */
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) {
        q += 1;
    }
    return (qtk_half)(sign | q);
}

static inline float qtk_fp16_to_fp32(qtk_half h) {
    const uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    const uint32_t e = ((uint32_t)h >> 10) & 0x1fu;
    const uint32_t m = (uint32_t)h & 0x3ffu;
    if (e == 0) {
        /* zero or subnormal: m * 2^-24 is exact in float32 */
        const float v = (float)m * 0x1.0p-24f;
        return qtk_bits_f32(sign | qtk_f32_bits(v));
    }
    if (e == 31) {   /* Inf, or NaN made quiet (as F16C hardware and ggml do) */
        return qtk_bits_f32(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
    }
    return qtk_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

/* fp32 -> bfloat16, round to nearest even; NaN keeps its top bits and is made quiet. */
static inline uint16_t qtk_fp32_to_bf16(float f) {
    const uint32_t u = qtk_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40u);
    }
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float qtk_bf16_to_fp32(uint16_t b) {
    return qtk_bits_f32((uint32_t)b << 16);
}

/* C's float -> int conversion, defined for every input the way x86's cvttss2si performs it (and
 * so the way ggml's files come out on x86): truncation toward zero, and INT32_MIN for NaN and for
 * values outside the int32 range. A plain (int) cast is undefined there and differs on arm64, where
 * it saturates; tiny subnormal scales make 1/d infinite, so the reference does meet such values. */
static inline int32_t qtk_trunc_f2i(float f) {
    if (!(f >= -2147483648.0f && f < 2147483648.0f)) {
        return INT32_MIN;
    }
    return (int32_t)f;
}

/* lroundf (half away from zero) with the x86-64 glibc result for NaN and out-of-range values:
 * INT64_MIN. */
static inline int64_t qtk_lroundf(float f) {
    if (!(f >= -9223372036854775808.0f && f < 9223372036854775808.0f)) {
        return INT64_MIN;
    }
    return (int64_t)lroundf(f);
}

/* Round half to even, as ggml's nearest_int: adding 1.5*2^23 leaves the rounded integer in the
 * low mantissa bits. Valid for |f| < 2^22; outside that range it wraps exactly as ggml's does. */
static inline int qtk_nearest_int(float f) {
    const float v = f + 12582912.0f;
    const uint32_t u = qtk_f32_bits(v);
    return (int)(u & 0x007fffffu) - 0x00400000;
}

/* Index of the codebook value closest to x in a sorted table of n int8 values; an exact
 * midpoint goes to the upper entry. */
static inline int qtk_best_index_int8(int n, const int8_t *values, float x) {
    if (x <= values[0]) {
        return 0;
    }
    if (x >= values[n - 1]) {
        return n - 1;
    }
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < values[mid]) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    return x - values[hi - 1] < values[hi] - x ? hi - 1 : hi;
}

#endif
