/* AVX2 activation quantizers (Q8_0, Q8_1, Q8_K, F16, BF16, Q8G) and the input check of quantize.
 *
 * Each quantizer gives exactly the bits of its reference: the same float operations in the same order per
 * element (a multiply then an add, never a fused multiply-add), roundf reproduced as "truncate,
 * then step away from zero when the dropped fraction is at least one half", and ggml's
 * nearest_int as the same 1.5 * 2^23 addition. Scalar fp16 conversions use F16C, which rounds to
 * nearest even like the reference; rows holding NaN go through the reference code.
 */
#if defined(__x86_64__) || defined(__i386__)

#include "arch/x86/simd_avx2.h"

#include "arch/x86/avx2_begin.h"

#include "arch/x86/simd_x86.h"
#include "ref/common.h"

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

#include "arch/x86/avx2_end.h"

#endif
