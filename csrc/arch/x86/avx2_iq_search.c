/* The AVX2 lanes of the IQ quantizers' two hot searches (the ops table of ref/iq_search.h): IQ2's
 * 8-wide neighbour search and IQ1_M's split search, eight candidates at a time where the portable
 * lanes (ref/iq_search.c, ref/ref_iq1.c) take four. Each candidate gets the same float operations in
 * the same order, and the running best is replaced in the same order, so the bytes are the same.
 *
 * The functions carry target("avx2") alone instead of opening the avx2_begin.h region: FMA stays
 * disabled here, so no multiply and add can be fused (tools/check/check_no_fma.sh). isa.c selects
 * qtk_iq_ops_avx2 together with the quantizer variant "avx2", only on CPUs that have AVX2.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "arch/x86/simd_avx2.h"
#include "ref/iq_lanes.h"
#include "ref/iq_search.h"

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

__attribute__((target("avx2"))) static inline v8f splat8(float x) {
    return (v8f){x, x, x, x, x, x, x, x};
}

__attribute__((target("avx2"))) static inline v8f load8(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Four floats at a, then four at b. */
__attribute__((target("avx2"))) static inline v8f load4x2(const float *a, const float *b) {
    return (v8f)_mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(a)), _mm_loadu_ps(b), 1);
}

/* ---------------------------------------------------------------- IQ2: nearest of an 8-wide lattice */

/* The sums of ref/iq_search.c's nearest8_lanes eight neighbours at a time (two lane blocks side by
 * side in 256-bit lanes; an odd last block alone). */
__attribute__((target("avx2"))) static int nearest8_lanes_avx2(const qtk_iq_lattice *lat, int32_t u,
                                                                const float *xval, const float *w, float scale) {
    const uint16_t *list = lat->neighbours - lat->map[u] - 1;
    const int count = list[0];
    const float *q = lat->lane_q + lat->lane_at[u];
    float d2[QTK_IQ_MAX_NEIGHBOURS + 3];
    const v8f s = splat8(scale);
    v8f x[8], wv[8];
    for (int i = 0; i < 8; ++i) {
        x[i] = splat8(xval[i]);
        wv[i] = splat8(w[i]);
    }
    int j = 0;
    for (; j + 4 < count; j += 8, q += 64) {   /* two blocks: neighbours j..j+7 */
        v8f d = splat8(0.0f);
        for (int i = 0; i < 8; ++i) {
            const v8f qv = load4x2(q + 4 * i, q + 32 + 4 * i);
            const v8f e = s * qv - x[i];
            d += wv[i] * e * e;
        }
        memcpy(d2 + j, &d, sizeof d);
    }
    if (j < count) {   /* one block left: neighbours j..j+3 */
        v4f d = splat4(0.0f);
        for (int i = 0; i < 8; ++i) {
            const v4f e = splat4(scale) * load4(q + 4 * i) - splat4(xval[i]);
            d += splat4(w[i]) * e * e;
        }
        memcpy(d2 + j, &d, sizeof d);
    }
    return qtk_first_min(d2, count);
}

/* ---------------------------------------------------------------- IQ1_M: split search */

/* ref/ref_iq1.c's qtk_iq1_m_split_lanes with eight consecutive i2 at once. px, pw: the prefix sums,
 * padded to QTK_IQ1_M_PREFIX. */
__attribute__((target("avx2"))) static void split_search_m_avx2(qtk_iq1_split *b,
                                                                 const float (*px)[QTK_IQ1_M_PREFIX],
                                                                 const float (*pw)[QTK_IQ1_M_PREFIX],
                                                                 const float *txs, const float *tws) {
    enum { N = 16 };
    const float *const x_p = qtk_iq1_xp, *const x_m = qtk_iq1_xm;
    const float p2 = x_p[2], m2 = x_m[2];
    const float cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1];
    const float cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
    const float cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1];
    const float cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
    float qp2[2][N + 8], qm2[2][N + 8];   /* pw * cp2 and pw * cm2 at every i2 */
    for (int h = 0; h < 2; ++h) {
        for (int j = 0; j < N + 8; j += 8) {
            const v8f w2 = load8(pw[h] + j);
            const v8f a = w2 * splat8(cp2), c = w2 * splat8(cm2);
            memcpy(qp2[h] + j, &a, sizeof a);
            memcpy(qm2[h] + j, &c, sizeof c);
        }
    }
    const v8f lane = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int i1 = 0; i1 <= N; ++i1) {
        v8f tp[2], tm[2], kp[2], km[2], sx1[2];
        for (int h = 0; h < 2; ++h) {
            tp[h] = splat8(txs[h] * p2);
            tm[h] = splat8(txs[h] * m2);
            kp[h] = splat8(tws[h] * p2 * p2 + pw[h][i1] * cp1);
            km[h] = splat8(tws[h] * m2 * m2 + pw[h][i1] * cm1);
            sx1[h] = splat8(px[h][i1]);
        }
        for (int i2 = i1; i2 <= N; i2 += 8) {
            v8f qx_p[2], qx_m[2], q2_p[2], q2_m[2];
            for (int h = 0; h < 2; ++h) {
                const v8f sx = sx1[h] + load8(px[h] + i2);
                qx_p[h] = tp[h] - sx;
                qx_m[h] = tm[h] - sx;
                q2_p[h] = kp[h] + load8(qp2[h] + i2);
                q2_m[h] = km[h] + load8(qm2[h] + i2);
            }
            const v8f sumqx[4] = {qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1], qx_m[0] + qx_m[1]};
            const v8f sumq2[4] = {q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1], q2_m[0] + q2_m[1]};
            const v8f bestv = splat8(b->best);
            v8i any = sumqx[0] * sumqx[0] > bestv * sumq2[0];
            for (int k = 1; k < 4; ++k) {   /* a superset of the hits: sumq2 > 0 is left to qtk_iq1_consider */
                any |= sumqx[k] * sumqx[k] > bestv * sumq2[k];
            }
            const v8i hit = any & (lane <= splat8((float)(N - i2)));
            const unsigned m = (unsigned)_mm256_movemask_ps((__m256)hit);
            if (!m) {
                continue;
            }
            for (int l = __builtin_ctz(m); l < 8 && i2 + l <= N; ++l) {   /* lanes before the first hit change nothing */
                for (int k = 0; k < 4; ++k) {
                    qtk_iq1_consider(b, sumqx[k][l], sumq2[k][l], i1, i2 + l, k);
                }
            }
        }
    }
}

const qtk_iq_ops qtk_iq_ops_avx2 = {
    .name = "avx2",
    .nearest8 = nearest8_lanes_avx2,
    .split_m = split_search_m_avx2,
};

#endif
