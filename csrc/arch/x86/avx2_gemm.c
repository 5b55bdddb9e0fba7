/* AVX2 gemm micro-kernels: one weight row against four activation rows, so a prompt decodes each
 * weight block once per four tokens. Each mirrors its single-row kernel in avx2_dot.c operation for
 * operation per token (integer sums may be added in another order, which is exact; the float
 * operations per token are the same), so s[t] has exactly the bits of the single-row call and a
 * token's result never depends on the tokens it is batched with (tests/kernels/test_kernels.py checks it).
 */
#if defined(__x86_64__) || defined(__i386__)

#include "arch/x86/simd_avx2.h"

#include "arch/x86/avx2_begin.h"

#include "arch/x86/simd_x86.h"
#include "ref/common.h"

void qtk_vec_dot4_q4_0_q8_0_avx2(int64_t n, float *s, const void *vx, const void *const *vy) {
    const block_q4_0 *x = vx;
    const int64_t nb = n / QK4_0;
    const block_q8_0 *y[4] = {vy[0], vy[1], vy[2], vy[3]};
    __m256 acc0[4], acc1[4];
    float corr[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int t = 0; t < 4; ++t) {
        acc0[t] = acc1[t] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const float dx0 = qtk_h2f(x[i].d), dx1 = qtk_h2f(x[i + 1].d);
        const __m256i q0 = nibbles32(x[i].qs), q1 = nibbles32(x[i + 1].qs);
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
            const float d0 = dx0 * YD(y[t], nb, i), d1 = dx1 * YD(y[t], nb, i + 1);
            const __m256i p0 = dot_u8s8(q0, loadu256(y[t][i].qs));
            const __m256i p1 = dot_u8s8(q1, loadu256(y[t][i + 1].qs));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(p0), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(_mm256_set1_ps(d1), _mm256_cvtepi32_ps(p1), acc1[t]);
            corr[t] += d0 * YS(y[t], nb, i) + d1 * YS(y[t], nb, i + 1);
        }
    }
    for (; i < nb; ++i) {
        const float dx0 = qtk_h2f(x[i].d);
        const __m256i q0 = nibbles32(x[i].qs);
        for (int t = 0; t < 4; ++t) {
            const float d0 = dx0 * YD(y[t], nb, i);
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(dot_u8s8(q0, loadu256(y[t][i].qs))), acc0[t]);
            corr[t] += d0 * YS(y[t], nb, i);
        }
    }
    for (int t = 0; t < 4; ++t) {
        s[t] = hsum_f32x8(_mm256_add_ps(acc0[t], acc1[t])) - 8.0f * corr[t];
    }
}

void qtk_vec_dot4_q8_0_q8_0_avx2(int64_t n, float *s, const void *vx, const void *const *vy) {
    const block_q8_0 *x = vx;
    const int64_t nb = n / QK8_0;
    const block_q8_0 *y[4] = {vy[0], vy[1], vy[2], vy[3]};
    __m256 acc0[4], acc1[4];
    for (int t = 0; t < 4; ++t) {
        acc0[t] = acc1[t] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const float dx0 = qtk_h2f(x[i].d), dx1 = qtk_h2f(x[i + 1].d);
        const __m256i x0 = loadu256(x[i].qs), x1 = loadu256(x[i + 1].qs);
        const __m256i ax0 = _mm256_sign_epi8(x0, x0), ax1 = _mm256_sign_epi8(x1, x1);
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
            const __m256i p0 = dot_u8s8(ax0, _mm256_sign_epi8(loadu256(y[t][i].qs), x0));
            const __m256i p1 = dot_u8s8(ax1, _mm256_sign_epi8(loadu256(y[t][i + 1].qs), x1));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx0 * YD(y[t], nb, i)), _mm256_cvtepi32_ps(p0), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx1 * YD(y[t], nb, i + 1)), _mm256_cvtepi32_ps(p1), acc1[t]);
        }
    }
    for (; i < nb; ++i) {
        const float dx0 = qtk_h2f(x[i].d);
        const __m256i x0 = loadu256(x[i].qs), ax0 = _mm256_sign_epi8(x0, x0);
        for (int t = 0; t < 4; ++t) {
            const __m256i p0 = dot_u8s8(ax0, _mm256_sign_epi8(loadu256(y[t][i].qs), x0));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx0 * YD(y[t], nb, i)), _mm256_cvtepi32_ps(p0), acc0[t]);
        }
    }
    for (int t = 0; t < 4; ++t) {
        s[t] = hsum_f32x8(_mm256_add_ps(acc0[t], acc1[t]));
    }
}

void qtk_vec_dot4_q4_1_q8_1_avx2(int64_t n, float *s, const void *vx, const void *const *vy) {
    const block_q4_1 *x = vx;
    const int64_t nb = n / QK4_1;
    const block_q8_1 *y[4] = {vy[0], vy[1], vy[2], vy[3]};
    __m256 acc0[4], acc1[4];
    float summs[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int t = 0; t < 4; ++t) {
        acc0[t] = acc1[t] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const float dx0 = qtk_h2f(x[i].d), dx1 = qtk_h2f(x[i + 1].d);
        const float mx0 = qtk_h2f(x[i].m), mx1 = qtk_h2f(x[i + 1].m);
        const __m256i q0 = nibbles32(x[i].qs), q1 = nibbles32(x[i + 1].qs);
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
            const __m256i p0 = dot_u8s8(q0, loadu256(y[t][i].qs));
            const __m256i p1 = dot_u8s8(q1, loadu256(y[t][i + 1].qs));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx0 * YD(y[t], nb, i)), _mm256_cvtepi32_ps(p0), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx1 * YD(y[t], nb, i + 1)), _mm256_cvtepi32_ps(p1), acc1[t]);
            summs[t] += mx0 * YS(y[t], nb, i) + mx1 * YS(y[t], nb, i + 1);
        }
    }
    for (; i < nb; ++i) {
        const float dx0 = qtk_h2f(x[i].d), mx0 = qtk_h2f(x[i].m);
        const __m256i q0 = nibbles32(x[i].qs);
        for (int t = 0; t < 4; ++t) {
            const __m256i p = dot_u8s8(q0, loadu256(y[t][i].qs));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx0 * YD(y[t], nb, i)), _mm256_cvtepi32_ps(p), acc0[t]);
            summs[t] += mx0 * YS(y[t], nb, i);
        }
    }
    for (int t = 0; t < 4; ++t) {
        s[t] = hsum_f32x8(_mm256_add_ps(acc0[t], acc1[t])) + summs[t];
    }
}

void qtk_vec_dot4_q5_0_q8_0_avx2(int64_t n, float *s, const void *vx, const void *const *vy) {
    const block_q5_0 *x = vx;
    const int64_t nb = n / QK5_0;
    const block_q8_0 *y[4] = {vy[0], vy[1], vy[2], vy[3]};
    const __m256i b4 = _mm256_set1_epi8(0x10);
    __m256 acc0[4], acc1[4];
    float corr[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int t = 0; t < 4; ++t) {
        acc0[t] = acc1[t] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const float dx0 = qtk_h2f(x[i].d), dx1 = qtk_h2f(x[i + 1].d);
        const __m256i q0 = _mm256_or_si256(nibbles32(x[i].qs), _mm256_and_si256(bits32_to_mask(rd_u32(x[i].qh)), b4));
        const __m256i q1 = _mm256_or_si256(nibbles32(x[i + 1].qs), _mm256_and_si256(bits32_to_mask(rd_u32(x[i + 1].qh)), b4));
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
            const float d0 = dx0 * YD(y[t], nb, i), d1 = dx1 * YD(y[t], nb, i + 1);
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(dot_u8s8(q0, loadu256(y[t][i].qs))), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(_mm256_set1_ps(d1), _mm256_cvtepi32_ps(dot_u8s8(q1, loadu256(y[t][i + 1].qs))), acc1[t]);
            corr[t] += d0 * YS(y[t], nb, i) + d1 * YS(y[t], nb, i + 1);
        }
    }
    for (; i < nb; ++i) {
        const float dx0 = qtk_h2f(x[i].d);
        const __m256i q0 = _mm256_or_si256(nibbles32(x[i].qs), _mm256_and_si256(bits32_to_mask(rd_u32(x[i].qh)), b4));
        for (int t = 0; t < 4; ++t) {
            const float d0 = dx0 * YD(y[t], nb, i);
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(dot_u8s8(q0, loadu256(y[t][i].qs))), acc0[t]);
            corr[t] += d0 * YS(y[t], nb, i);
        }
    }
    for (int t = 0; t < 4; ++t) {
        s[t] = hsum_f32x8(_mm256_add_ps(acc0[t], acc1[t])) - 16.0f * corr[t];
    }
}

void qtk_vec_dot4_q5_1_q8_1_avx2(int64_t n, float *s, const void *vx, const void *const *vy) {
    const block_q5_1 *x = vx;
    const int64_t nb = n / QK5_1;
    const block_q8_1 *y[4] = {vy[0], vy[1], vy[2], vy[3]};
    const __m256i b4 = _mm256_set1_epi8(0x10);
    __m256 acc[4];
    float summs[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int t = 0; t < 4; ++t) {
        acc[t] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < nb; ++i) {
        const float dx = qtk_h2f(x[i].d), mx = qtk_h2f(x[i].m);
        const __m256i q = _mm256_or_si256(nibbles32(x[i].qs), _mm256_and_si256(bits32_to_mask(rd_u32(x[i].qh)), b4));
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
            const __m256i p = dot_u8s8(q, loadu256(y[t][i].qs));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * YD(y[t], nb, i)), _mm256_cvtepi32_ps(p), acc[t]);
            summs[t] += mx * YS(y[t], nb, i);
        }
    }
    for (int t = 0; t < 4; ++t) {
        s[t] = hsum_f32x8(acc[t]) + summs[t];
    }
}

void qtk_vec_dot4_iq4_nl_q8_0_avx2(int64_t n, float *s, const void *vx, const void *const *vy) {
    const block_iq4_nl *x = vx;
    const int64_t nb = n / QK4_NL;
    const block_q8_0 *y[4] = {vy[0], vy[1], vy[2], vy[3]};
    const __m256i lut = iq4_lut();
    __m256 acc0[4], acc1[4];
    for (int t = 0; t < 4; ++t) {
        acc0[t] = acc1[t] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        const float dx0 = qtk_h2f(x[i].d), dx1 = qtk_h2f(x[i + 1].d);
        const __m256i q0 = _mm256_shuffle_epi8(lut, nibbles32(x[i].qs));
        const __m256i q1 = _mm256_shuffle_epi8(lut, nibbles32(x[i + 1].qs));
        const __m256i a0 = _mm256_sign_epi8(q0, q0), a1 = _mm256_sign_epi8(q1, q1);
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
            const __m256i p0 = dot_u8s8(a0, _mm256_sign_epi8(loadu256(y[t][i].qs), q0));
            const __m256i p1 = dot_u8s8(a1, _mm256_sign_epi8(loadu256(y[t][i + 1].qs), q1));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx0 * YD(y[t], nb, i)), _mm256_cvtepi32_ps(p0), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx1 * YD(y[t], nb, i + 1)), _mm256_cvtepi32_ps(p1), acc1[t]);
        }
    }
    for (; i < nb; ++i) {
        const float dx0 = qtk_h2f(x[i].d);
        const __m256i q0 = _mm256_shuffle_epi8(lut, nibbles32(x[i].qs));
        const __m256i a0 = _mm256_sign_epi8(q0, q0);
        for (int t = 0; t < 4; ++t) {
            const __m256i p0 = dot_u8s8(a0, _mm256_sign_epi8(loadu256(y[t][i].qs), q0));
            acc0[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx0 * YD(y[t], nb, i)), _mm256_cvtepi32_ps(p0), acc0[t]);
        }
    }
    for (int t = 0; t < 4; ++t) {
        s[t] = hsum_f32x8(_mm256_add_ps(acc0[t], acc1[t]));
    }
}

#include "arch/x86/avx2_end.h"

#endif
