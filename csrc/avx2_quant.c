/* AVX2 activation quantizers (Q8_0, Q8_1, Q8_K, F16, BF16, Q8G) and dequantizers of every type.
 *
 * Each gives exactly the bits of its reference: the same float operations in the same order per
 * element (a multiply then an add, never a fused multiply-add), roundf reproduced as "truncate,
 * then step away from zero when the dropped fraction is at least one half", and ggml's
 * nearest_int as the same 1.5 * 2^23 addition. Scalar fp16 conversions use F16C, which rounds to
 * nearest even like the reference; rows holding NaN go through the reference code.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "simd_avx2.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

#include "common.h"
#include "simd_x86.h"

/* ---------------------------------------------------------------- helpers */

static inline __m256 abs_ps(__m256 v) {
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

static inline float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* roundf (half away from zero) of each lane, exactly: adding the largest float below one half,
 * with the sign of v, and truncating gives roundf for every float (exact for |v| >= 2^23, where
 * the addition rounds back to v). Infinity and NaN become INT32_MIN, as a scalar conversion does. */
static inline __m256i roundf_epi32(__m256 v) {
    const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    const __m256 almost_half = _mm256_or_ps(sign, _mm256_set1_ps(0.49999997f));
    return _mm256_cvttps_epi32(_mm256_add_ps(v, almost_half));
}

/* Four vectors of 8 int32 -> their 32 low bytes in order: the reference's (int8_t) cast, which
 * also decides what an out-of-range level becomes (a subnormal scale whose inverse overflows). */
static inline __m256i pack32_epi8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i lo = _mm256_set1_epi32(0xFF);
    const __m256i ab = _mm256_packus_epi32(_mm256_and_si256(a, lo), _mm256_and_si256(b, lo));
    const __m256i cd = _mm256_packus_epi32(_mm256_and_si256(c, lo), _mm256_and_si256(d, lo));
    const __m256i abcd = _mm256_packus_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline int has_nan8(__m256 v) {
    return _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

/* 8 int8 -> 8 floats */
static inline __m256 i8x8_ps(const void *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

static inline __m256 u8x8_ps(const void *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* 32 int8 levels (in a vector) times d -> 32 floats at y */
static inline void store_scaled32(__m256i q, __m256 d, float *y) {
    int8_t tmp[32];
    _mm256_storeu_si256((__m256i *)tmp, q);
    for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(i8x8_ps(tmp + 8 * k), d));
    }
}

/* y = d * q - m (the K-quant form), 16 unsigned levels */
static inline void store_dq_minus_m16(const uint8_t *q, float d, float m, float *y) {
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_ps(q)), vm));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_ps(q + 8)), vm));
}

/* ---------------------------------------------------------------- activation quantizers */

/* One block of 32: levels and the scale d (as float); returns the sum of the levels, or -1000000
 * (and writes nothing) when the block holds a NaN, which the caller sends to the reference. */
#define Q8_NAN (-1000000)
static inline int q8_block32(const float *x, int8_t *qs, float *d_out) {
    const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    if (_mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)))) {
        return Q8_NAN;
    }
    const __m256 m = _mm256_max_ps(_mm256_max_ps(abs_ps(v0), abs_ps(v1)), _mm256_max_ps(abs_ps(v2), abs_ps(v3)));
    const float d = hmax_ps(m) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i i0 = roundf_epi32(_mm256_mul_ps(v0, vid)), i1 = roundf_epi32(_mm256_mul_ps(v1, vid));
    const __m256i i2 = roundf_epi32(_mm256_mul_ps(v2, vid)), i3 = roundf_epi32(_mm256_mul_ps(v3, vid));
    const __m256i packed = pack32_epi8(i0, i1, i2, i3);
    _mm256_storeu_si256((__m256i *)qs, packed);
    *d_out = d;
    return hsum_i32x8(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), packed), _mm256_set1_epi16(1)));
}

/* n a multiple of 8 */
static int row_has_nan(const float *x, int n) {
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_or_ps(acc, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    return _mm256_movemask_ps(acc) != 0;
}

/* Eight blocks of 32 at once, so the two divisions per block (d = amax / 127, id = 1 / d) run as
 * two vector divisions, which are correctly rounded like the scalar ones. sums (may be NULL)
 * receives each block's level sum. Returns 0 (writing nothing) when a NaN is present. */
static int q8_blocks8(const float *x, int8_t *const qs[8], float d_out[8], int sums[8]) {
    float am[8];
    for (int b = 0; b < 8; ++b) {
        const float *xb = x + 32 * b;
        const __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        const __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        if (_mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q), _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)))) {
            return 0;
        }
        am[b] = hmax_ps(_mm256_max_ps(_mm256_max_ps(abs_ps(v0), abs_ps(v1)), _mm256_max_ps(abs_ps(v2), abs_ps(v3))));
    }
    const __m256 d = _mm256_div_ps(_mm256_loadu_ps(am), _mm256_set1_ps(127.0f));
    const __m256 nz = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ);
    const __m256 id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), d), nz);
    float idv[8];
    _mm256_storeu_ps(idv, id);
    _mm256_storeu_ps(d_out, d);
    for (int b = 0; b < 8; ++b) {
        const float *xb = x + 32 * b;
        const __m256 vid = _mm256_set1_ps(idv[b]);
        const __m256i i0 = roundf_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb), vid));
        const __m256i i1 = roundf_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 8), vid));
        const __m256i i2 = roundf_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 16), vid));
        const __m256i i3 = roundf_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 24), vid));
        const __m256i packed = pack32_epi8(i0, i1, i2, i3);
        _mm256_storeu_si256((__m256i *)qs[b], packed);
        if (sums) {
            sums[b] = hsum_i32x8(_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), packed), _mm256_set1_epi16(1)));
        }
    }
    return 1;
}

/* Q8_0 / Q8_1 rows; tail (may be NULL) receives the float tail of a matmul activation row: nb
 * floats d, then nb floats (Q8_0: the level sums; Q8_1: s). */
static void q8_0_row(const float *x, block_q8_0 *y, int64_t n, uint8_t *tail) {
    const int64_t nb = n / QK8_0;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
        int8_t *qs[8];
        float d[8];
        int sums[8];
        for (int b = 0; b < 8; ++b) {
            qs[b] = y[i + b].qs;
        }
        if (!q8_blocks8(x + i * QK8_0, qs, d, tail ? sums : NULL)) {
            qtk_quantize_row_q8_0(x + i * QK8_0, &y[i], 8 * QK8_0, NULL);
            if (tail) {
                for (int b = 0; b < 8; ++b) {
                    int sum = 0;
                    for (int j = 0; j < QK8_0; ++j) {
                        sum += y[i + b].qs[j];
                    }
                    sums[b] = sum;
                    const float dd = qtk_h2f(y[i + b].d), fs = (float)sum;
                    memcpy(tail + 4 * (i + b), &dd, 4);
                    memcpy(tail + 4 * (nb + i + b), &fs, 4);
                }
            }
            continue;
        }
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(d), _MM_FROUND_TO_NEAREST_INT);
        uint16_t hv[8];
        _mm_storeu_si128((__m128i *)hv, h);
        for (int b = 0; b < 8; ++b) {
            y[i + b].d = hv[b];
        }
        if (tail) {
            _mm256_storeu_ps((float *)(void *)(tail + 4 * i), _mm256_cvtph_ps(h));
            _mm256_storeu_ps((float *)(void *)(tail + 4 * (nb + i)), _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)sums)));
        }
    }
    for (; i < nb; ++i) {
        float d;
        const int sum = q8_block32(x + i * QK8_0, y[i].qs, &d);
        if (sum == Q8_NAN) {
            qtk_quantize_row_q8_0(x + i * QK8_0, &y[i], QK8_0, NULL);
        } else {
            y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        }
        if (tail) {
            int s8 = 0;
            for (int j = 0; j < QK8_0; ++j) {
                s8 += y[i].qs[j];
            }
            const float dd = qtk_h2f(y[i].d), fs = (float)s8;
            memcpy(tail + 4 * i, &dd, 4);
            memcpy(tail + 4 * (nb + i), &fs, 4);
        }
    }
}

static void q8_1_row(const float *x, block_q8_1 *y, int64_t n, uint8_t *tail) {
    const int64_t nb = n / QK8_1;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
        int8_t *qs[8];
        float d[8];
        int sums[8];
        for (int b = 0; b < 8; ++b) {
            qs[b] = y[i + b].qs;
        }
        if (q8_blocks8(x + i * QK8_1, qs, d, sums)) {
            /* s = (float)sum * d, as the reference */
            const __m256 vd = _mm256_loadu_ps(d);
            const __m256 vs = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)sums)), vd);
            const __m128i hdv = _mm256_cvtps_ph(vd, _MM_FROUND_TO_NEAREST_INT);
            const __m128i hsv = _mm256_cvtps_ph(vs, _MM_FROUND_TO_NEAREST_INT);
            uint16_t hd[8], hs[8];
            _mm_storeu_si128((__m128i *)hd, hdv);
            _mm_storeu_si128((__m128i *)hs, hsv);
            for (int b = 0; b < 8; ++b) {
                y[i + b].d = hd[b];
                y[i + b].s = hs[b];
            }
            if (tail) {
                _mm256_storeu_ps((float *)(void *)(tail + 4 * i), _mm256_cvtph_ps(hdv));
                _mm256_storeu_ps((float *)(void *)(tail + 4 * (nb + i)), _mm256_cvtph_ps(hsv));
            }
            continue;
        }
        qtk_quantize_row_q8_1(x + i * QK8_1, &y[i], 8 * QK8_1, NULL);
        if (tail) {
            for (int b = 0; b < 8; ++b) {
                const float dd = qtk_h2f(y[i + b].d), ss = qtk_h2f(y[i + b].s);
                memcpy(tail + 4 * (i + b), &dd, 4);
                memcpy(tail + 4 * (nb + i + b), &ss, 4);
            }
        }
    }
    for (; i < nb; ++i) {
        float d;
        const int sum = q8_block32(x + i * QK8_1, y[i].qs, &d);
        if (sum == Q8_NAN) {
            qtk_quantize_row_q8_1(x + i * QK8_1, &y[i], QK8_1, NULL);
        } else {
            y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
            y[i].s = _cvtss_sh(sum * d, _MM_FROUND_TO_NEAREST_INT);
        }
        if (tail) {
            const float dd = qtk_h2f(y[i].d), ss = qtk_h2f(y[i].s);
            memcpy(tail + 4 * i, &dd, 4);
            memcpy(tail + 4 * (nb + i), &ss, 4);
        }
    }
}

void qtk_quantize_row_q8_0_avx2(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    q8_0_row(x, vy, n, NULL);
}

void qtk_quantize_row_q8_1_avx2(const float *x, void *vy, int64_t n, const float *qw) {
    (void)qw;
    q8_1_row(x, vy, n, NULL);
}

void qtk_quantize_act_q8_0_avx2(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    q8_0_row(x, y, n, (uint8_t *)(y + n / QK8_0));
}

void qtk_quantize_act_q8_1_avx2(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    q8_1_row(x, y, n, (uint8_t *)(y + n / QK8_1));
}

void qtk_quantize_row_q8_K_avx2(const float *x, void *vy, int64_t n, const float *qw) {
    block_q8_K *y = vy;
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256i mant = _mm256_set1_epi32(0x007fffff), bias = _mm256_set1_epi32(0x00400000);
    const __m256i top = _mm256_set1_epi32(127);
    const __m256i ones8 = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / QK_K; ++i, x += QK_K) {
        __m256 m0 = _mm256_setzero_ps(), m1 = m0, bad = m0;
        for (int j = 0; j < QK_K; j += 16) {
            const __m256 a = _mm256_loadu_ps(x + j), b = _mm256_loadu_ps(x + j + 8);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
            m0 = _mm256_max_ps(m0, abs_ps(a));
            m1 = _mm256_max_ps(m1, abs_ps(b));
        }
        if (_mm256_movemask_ps(bad)) {
            qtk_quantize_row_q8_K(x, &y[i], QK_K, qw);
            continue;
        }
        const float amax = hmax_ps(_mm256_max_ps(m0, m1));
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* the first element of largest magnitude, with its sign (the reference keeps the first) */
        const __m256 vmax = _mm256_set1_ps(amax);
        float max = 0.0f;
        for (int j = 0; j < QK_K; j += 8) {
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), vmax, _CMP_EQ_OQ));
            if (hit) {
                max = x[j + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        __m256i quads[8];
        for (int c = 0; c < QK_K / 32; ++c) {
            __m256i q[4];
            for (int k = 0; k < 4; ++k) {
                const __m256 v = _mm256_add_ps(_mm256_mul_ps(vs, _mm256_loadu_ps(x + 32 * c + 8 * k)), magic);
                const __m256i r = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(v), mant), bias);
                q[k] = _mm256_min_epi32(r, top);
            }
            const __m256i packed = pack32_epi8(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * c), packed);
            /* quad sums: lanes 0..3 cover elements 0..15 of the 32, lanes 4..7 elements 16..31 */
            quads[c] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, packed), _mm256_set1_epi16(1));
        }
        /* two horizontal adds leave [c0 lo, c1 lo, c2 lo, c3 lo | c0 hi, c1 hi, c2 hi, c3 hi] */
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        const __m256i s03 = _mm256_permutevar8x32_epi32(
            _mm256_hadd_epi32(_mm256_hadd_epi32(quads[0], quads[1]), _mm256_hadd_epi32(quads[2], quads[3])), order);
        const __m256i s47 = _mm256_permutevar8x32_epi32(
            _mm256_hadd_epi32(_mm256_hadd_epi32(quads[4], quads[5]), _mm256_hadd_epi32(quads[6], quads[7])), order);
        const __m256i b16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(s03, s47), 0xD8);
        _mm256_storeu_si256((__m256i *)y[i].bsums, b16);
        y[i].d = 1 / iscale;
    }
}

void qtk_quantize_row_f16_avx2(const float *x, void *vy, int64_t n, const float *qw) {
    qtk_half *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        if (has_nan8(v)) {
            qtk_quantize_row_f16(x + i, y + i, 8, qw);
            continue;
        }
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    qtk_quantize_row_f16(x + i, y + i, n - i, qw);
}

void qtk_quantize_row_bf16_avx2(const float *x, void *vy, int64_t n, const float *qw) {
    uint16_t *y = vy;
    const __m256i half = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        if (has_nan8(v)) {
            qtk_quantize_row_bf16(x + i, y + i, 8, qw);
            continue;
        }
        const __m256i u = _mm256_castps_si256(v);
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
        const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, half), lsb), 16);
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128((__m128i *)(y + i), _mm256_castsi256_si128(p));
    }
    qtk_quantize_row_bf16(x + i, y + i, n - i, qw);
}

void qtk_quantize_row_q8g_avx2(const float *x, void *vy, int64_t n, int group) {
    uint8_t *y = vy;
    for (int64_t b = 0; b < n / group; ++b, x += group, y += QTK_Q8G_BYTES(group)) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < group; j += 8) {
            m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + j)));
        }
        if (row_has_nan(x, group)) {
            qtk_quantize_row_q8g_ref(x, y, group, group);
            continue;
        }
        const float d = hmax_ps(m) / 127;
        const float id = d ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        int8_t *qs = (int8_t *)(y + 8);
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < group; j += 8) {
            const __m256i q = roundf_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j), vid));
            /* the (int8_t) cast of the reference, then sign-extended for the sum */
            const __m256i q8 = _mm256_srai_epi32(_mm256_slli_epi32(q, 24), 24);
            acc = _mm256_add_epi32(acc, q8);
            const __m256i p = pack32_epi8(q8, q8, q8, q8);
            memcpy(qs + j, &p, 8);
        }
        const int32_t sum = hsum_i32x8(acc);
        memcpy(y, &d, 4);
        memcpy(y + 4, &sum, 4);
    }
}

/* Nonzero when x[0..n) holds a NaN or an infinity (all exponent bits set), as qtk_has_nonfinite. */
int qtk_has_nonfinite_avx2(const float *x, int64_t n) {
    const __m256i e = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), e);
        const __m256i b = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 8)), e);
        bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_cmpeq_epi32(a, e), _mm256_cmpeq_epi32(b, e)));
    }
    int any = !_mm256_testz_si256(bad, bad);
    for (; i < n; ++i) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        any |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return any;
}

/* ---------------------------------------------------------------- dequantizers */

void qtk_dequantize_row_f16_avx2(const void *vx, float *y, int64_t n) {
    const qtk_half *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    }
    for (; i < n; ++i) {
        y[i] = qtk_h2f(x[i]);
    }
}

void qtk_dequantize_row_bf16_avx2(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_slli_epi32(w, 16));
    }
    for (; i < n; ++i) {
        y[i] = qtk_bf16_to_fp32(x[i]);
    }
}

void qtk_dequantize_row_q4_0_avx2(const void *vx, float *y, int64_t n) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < n / QK4_0; ++i) {
        const __m256i q = _mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8));
        store_scaled32(q, _mm256_set1_ps(qtk_h2f(x[i].d)), y + i * QK4_0);
    }
}

static inline void store_affine32(__m256i q, float d, float m, float *y) {
    uint8_t tmp[32];
    _mm256_storeu_si256((__m256i *)tmp, q);
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(u8x8_ps(tmp + 8 * k), vd), vm));
    }
}

void qtk_dequantize_row_q4_1_avx2(const void *vx, float *y, int64_t n) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / QK4_1; ++i) {
        store_affine32(nibbles32(x[i].qs), qtk_h2f(x[i].d), qtk_h2f(x[i].m), y + i * QK4_1);
    }
}

void qtk_dequantize_row_q5_0_avx2(const void *vx, float *y, int64_t n) {
    const block_q5_0 *x = vx;
    for (int64_t i = 0; i < n / QK5_0; ++i) {
        const __m256i missing = _mm256_andnot_si256(bits32_to_mask(rd_u32(x[i].qh)), _mm256_set1_epi8((char)0xF0));
        store_scaled32(_mm256_or_si256(nibbles32(x[i].qs), missing), _mm256_set1_ps(qtk_h2f(x[i].d)), y + i * QK5_0);
    }
}

void qtk_dequantize_row_q5_1_avx2(const void *vx, float *y, int64_t n) {
    const block_q5_1 *x = vx;
    for (int64_t i = 0; i < n / QK5_1; ++i) {
        const __m256i hb = _mm256_and_si256(bits32_to_mask(rd_u32(x[i].qh)), _mm256_set1_epi8(0x10));
        store_affine32(_mm256_or_si256(nibbles32(x[i].qs), hb), qtk_h2f(x[i].d), qtk_h2f(x[i].m), y + i * QK5_1);
    }
}

void qtk_dequantize_row_q8_0_avx2(const void *vx, float *y, int64_t n) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < n / QK8_0; ++i) {
        const __m256 d = _mm256_set1_ps(qtk_h2f(x[i].d));
        for (int k = 0; k < 4; ++k) {
            _mm256_storeu_ps(y + i * QK8_0 + 8 * k, _mm256_mul_ps(i8x8_ps(x[i].qs + 8 * k), d));
        }
    }
}

void qtk_dequantize_row_q8_1_avx2(const void *vx, float *y, int64_t n) {
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / QK8_1; ++i) {
        const __m256 d = _mm256_set1_ps(qtk_h2f(x[i].d));
        for (int k = 0; k < 4; ++k) {
            _mm256_storeu_ps(y + i * QK8_1 + 8 * k, _mm256_mul_ps(i8x8_ps(x[i].qs + 8 * k), d));
        }
    }
}

void qtk_dequantize_row_q8_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const __m256 d = _mm256_set1_ps(x[i].d);
        for (int k = 0; k < QK_K / 8; ++k) {
            _mm256_storeu_ps(y + i * QK_K + 8 * k, _mm256_mul_ps(d, i8x8_ps(x[i].qs + 8 * k)));
        }
    }
}

void qtk_dequantize_row_q2_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q2_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d), dmin = qtk_h2f(x[i].dmin);
        float *out = y + i * QK_K;
        for (int h = 0; h < 2; ++h) {
            const __m256i q = loadu256(x[i].qs + 32 * h);
            for (int k = 0; k < 4; ++k) {
                uint8_t lv[32];
                _mm256_storeu_si256((__m256i *)lv, _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3));
                const int j = 8 * h + 2 * k;
                for (int half = 0; half < 2; ++half) {
                    const uint8_t sc = x[i].scales[j + half];
                    store_dq_minus_m16(lv + 16 * half, d * (sc & 0xF), dmin * (sc >> 4), out + 16 * (j + half));
                }
            }
        }
    }
}

void qtk_dequantize_row_q3_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q3_K *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d_all = qtk_h2f(x[i].d);
        const uint32_t a0 = rd_u32(x[i].scales), a1 = rd_u32(x[i].scales + 4), t = rd_u32(x[i].scales + 8);
        uint32_t u[4];
        u[0] = (a0 & 0x0F0F0F0Fu) | ((t & 0x03030303u) << 4);
        u[1] = (a1 & 0x0F0F0F0Fu) | (((t >> 2) & 0x03030303u) << 4);
        u[2] = ((a0 >> 4) & 0x0F0F0F0Fu) | (((t >> 4) & 0x03030303u) << 4);
        u[3] = ((a1 >> 4) & 0x0F0F0F0Fu) | (((t >> 6) & 0x03030303u) << 4);
        const uint8_t *sc = (const uint8_t *)u;
        const __m256i hm = loadu256(x[i].hmask);
        float *out = y + i * QK_K;
        for (int h = 0; h < 2; ++h) {
            const __m256i q = loadu256(x[i].qs + 32 * h);
            for (int k = 0; k < 4; ++k) {
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), one);
                const __m256i lv = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hb, 2)), four);
                int8_t tmp[32];
                _mm256_storeu_si256((__m256i *)tmp, lv);
                const int j = 8 * h + 2 * k;
                for (int half = 0; half < 2; ++half) {
                    const __m256 dl = _mm256_set1_ps(d_all * (sc[j + half] - 32));
                    float *o = out + 16 * (j + half);
                    _mm256_storeu_ps(o, _mm256_mul_ps(dl, i8x8_ps(tmp + 16 * half)));
                    _mm256_storeu_ps(o + 8, _mm256_mul_ps(dl, i8x8_ps(tmp + 16 * half + 8)));
                }
            }
        }
    }
}

static inline void k4_scales_u(const uint8_t *q, uint32_t u[4]) {
    const uint32_t a = rd_u32(q), b = rd_u32(q + 4), c = rd_u32(q + 8);
    u[0] = a & 0x3F3F3F3Fu;
    u[1] = (c & 0x0F0F0F0Fu) | (((a >> 6) & 0x03030303u) << 4);
    u[2] = b & 0x3F3F3F3Fu;
    u[3] = ((c >> 4) & 0x0F0F0F0Fu) | (((b >> 6) & 0x03030303u) << 4);
}

static inline void store_dq_minus_m32(__m256i q, float d, float m, float *y) {
    uint8_t tmp[32];
    _mm256_storeu_si256((__m256i *)tmp, q);
    store_dq_minus_m16(tmp, d, m, y);
    store_dq_minus_m16(tmp + 16, d, m, y + 16);
}

void qtk_dequantize_row_q4_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q4_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d), dmin = qtk_h2f(x[i].dmin);
        uint32_t u[4];
        k4_scales_u(x[i].scales, u);
        const uint8_t *sc = (const uint8_t *)u, *mn = sc + 8;
        for (int c = 0; c < 4; ++c) {
            const __m256i q = loadu256(x[i].qs + 32 * c);
            float *out = y + i * QK_K + 64 * c;
            store_dq_minus_m32(_mm256_and_si256(q, m4), d * sc[2 * c], dmin * mn[2 * c], out);
            store_dq_minus_m32(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), d * sc[2 * c + 1], dmin * mn[2 * c + 1],
                               out + 32);
        }
    }
}

void qtk_dequantize_row_q5_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q5_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d), dmin = qtk_h2f(x[i].dmin);
        uint32_t u[4];
        k4_scales_u(x[i].scales, u);
        const uint8_t *sc = (const uint8_t *)u, *mn = sc + 8;
        const __m256i qh = loadu256(x[i].qh);
        for (int c = 0; c < 4; ++c) {
            const __m256i q = loadu256(x[i].qs + 32 * c);
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
            float *out = y + i * QK_K + 64 * c;
            store_dq_minus_m32(_mm256_or_si256(_mm256_and_si256(q, m4), h0), d * sc[2 * c], dmin * mn[2 * c], out);
            store_dq_minus_m32(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1), d * sc[2 * c + 1],
                               dmin * mn[2 * c + 1], out + 32);
        }
    }
}

void qtk_dequantize_row_q6_K_avx2(const void *vx, float *y, int64_t n) {
    const block_q6_K *x = vx;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = loadu256(x[i].ql + 64 * h), ql1 = loadu256(x[i].ql + 64 * h + 32);
            const __m256i qh = loadu256(x[i].qh + 32 * h);
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4)),
            };
            for (int k = 0; k < 4; ++k) {
                int8_t tmp[32];
                _mm256_storeu_si256((__m256i *)tmp, _mm256_sub_epi8(q[k], off));
                const int j = 8 * h + 2 * k;
                float *o = y + i * QK_K + 128 * h + 32 * k;
                for (int half = 0; half < 2; ++half) {
                    const __m256 dl = _mm256_set1_ps(d * x[i].scales[j + half]);
                    _mm256_storeu_ps(o + 16 * half, _mm256_mul_ps(dl, i8x8_ps(tmp + 16 * half)));
                    _mm256_storeu_ps(o + 16 * half + 8, _mm256_mul_ps(dl, i8x8_ps(tmp + 16 * half + 8)));
                }
            }
        }
    }
}

static inline __m256i iq4_lut_q(void) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qtk_kvalues_iq4nl);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(t), t, 1);
}

static inline void store_dl_times32(__m256i q, float dl, float *y) {
    int8_t tmp[32];
    _mm256_storeu_si256((__m256i *)tmp, q);
    const __m256 vd = _mm256_set1_ps(dl);
    for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(vd, i8x8_ps(tmp + 8 * k)));
    }
}

void qtk_dequantize_row_iq4_nl_avx2(const void *vx, float *y, int64_t n) {
    const block_iq4_nl *x = vx;
    const __m256i lut = iq4_lut_q();
    for (int64_t i = 0; i < n / QK4_NL; ++i) {
        store_dl_times32(_mm256_shuffle_epi8(lut, nibbles32(x[i].qs)), qtk_h2f(x[i].d), y + i * QK4_NL);
    }
}

void qtk_dequantize_row_iq4_xs_avx2(const void *vx, float *y, int64_t n) {
    const block_iq4_xs *x = vx;
    const __m256i lut = iq4_lut_q();
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ++ib) {
            const int ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            store_dl_times32(_mm256_shuffle_epi8(lut, nibbles32(x[i].qs + 16 * ib)), d * (ls - 32),
                             y + i * QK_K + 32 * ib);
        }
    }
}

void qtk_dequantize_row_tq2_0_avx2(const void *vx, float *y, int64_t n) {
    const block_tq2_0 *x = vx;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const float d = qtk_h2f(x[i].d);
        for (int c = 0; c < 2; ++c) {
            const __m256i q = loadu256(x[i].qs + 32 * c);
            for (int k = 0; k < 4; ++k) {
                int8_t tmp[32];
                _mm256_storeu_si256((__m256i *)tmp, _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3), one));
                float *o = y + i * QK_K + 128 * c + 32 * k;
                const __m256 vd = _mm256_set1_ps(d);
                for (int j = 0; j < 4; ++j) {
                    _mm256_storeu_ps(o + 8 * j, _mm256_mul_ps(i8x8_ps(tmp + 8 * j), vd));
                }
            }
        }
    }
}

void qtk_dequantize_row_tq1_0_avx2(const void *vx, float *y, int64_t n) {
    const block_tq1_0 *x = vx;
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    for (int64_t i = 0; i < n / QK_K; ++i) {
        const __m256 vd = _mm256_set1_ps(qtk_h2f(x[i].d));
        int8_t t[QK_K];
        /* trits of the 48 qs bytes (5 each) and the 4 qh bytes (4 each), in element order */
        for (int k = 0; k < 5; ++k) {
            for (int m = 0; m < 32; ++m) {
                t[32 * k + m] = (int8_t)((((uint8_t)(x[i].qs[m] * pow3[k]) * 3) >> 8) - 1);
            }
            for (int m = 0; m < 16; ++m) {
                t[160 + 16 * k + m] = (int8_t)((((uint8_t)(x[i].qs[32 + m] * pow3[k]) * 3) >> 8) - 1);
            }
        }
        for (int k = 0; k < 4; ++k) {
            for (int j = 0; j < 4; ++j) {
                t[240 + 4 * k + j] = (int8_t)((((uint8_t)(x[i].qh[j] * pow3[k]) * 3) >> 8) - 1);
            }
        }
        for (int j = 0; j < QK_K; j += 8) {
            _mm256_storeu_ps(y + i * QK_K + j, _mm256_mul_ps(i8x8_ps(t + j), vd));
        }
    }
}

/* ---------------------------------------------------------------- CustomQuant */

void qtk_custom_unpack_avx2(const uint8_t *in, int n, int bits, uint8_t *L) {
    const uint64_t mask = (1u << bits) - 1u;
    const int len = n * bits / 8;
    for (int c = 0; c < n / 8; ++c) {
        uint64_t w = 0;
        if (c * bits + 8 <= len) {
            memcpy(&w, in + c * bits, 8);
        } else {
            memcpy(&w, in + c * bits, (size_t)bits);
        }
        for (int j = 0; j < 8; ++j) {
            L[8 * c + j] = (uint8_t)((w >> (bits * j)) & mask);
        }
    }
}

void qtk_dequantize_custom_avx2(const qtk_custom_params *p, const void *vx, float *y, int64_t n) {
    const uint8_t *x = vx;
    const int g = p->group;
    uint8_t L[1024];
    for (int64_t b = 0; b < n / g; ++b, x += p->block_bytes, y += g) {
        qtk_half dh;
        memcpy(&dh, x, 2);
        const __m256 d = _mm256_set1_ps(qtk_h2f(dh));
        if (p->symmetric) {
            qtk_custom_unpack_avx2(x + 2, g, p->bits, L);
            const __m256i half = _mm256_set1_epi32(1 << (p->bits - 1));
            for (int j = 0; j < g; j += 8) {
                const __m256i l = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(L + j)));
                _mm256_storeu_ps(y + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(l, half))));
            }
        } else {
            qtk_half mh;
            memcpy(&mh, x + 2, 2);
            const __m256 m = _mm256_set1_ps(qtk_h2f(mh));
            qtk_custom_unpack_avx2(x + 4, g, p->bits, L);
            for (int j = 0; j < g; j += 8) {
                _mm256_storeu_ps(y + j, _mm256_add_ps(_mm256_mul_ps(d, u8x8_ps(L + j)), m));
            }
        }
    }
}

#pragma GCC pop_options

#endif
